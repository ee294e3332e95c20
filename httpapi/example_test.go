package httpapi_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"

	"github.com/sluicehq/sluice/httpapi"
	"github.com/sluicehq/sluice/jobs"
	"github.com/sluicehq/sluice/jobs/sqlitestore"
)

// The server side: a store, a jobs.Client over it, and the API over the
// client. The API owns nothing: the caller closes the store after the HTTP
// server has stopped.
func Example() {
	dir, _ := os.MkdirTemp("", "httpapi-example")
	defer os.RemoveAll(dir)
	store, err := sqlitestore.Open(context.Background(), filepath.Join(dir, "jobs.db"), sqlitestore.Config{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer store.Close()

	api := httpapi.New(jobs.NewClient(store, jobs.ClientConfig{}), httpapi.Config{
		Token:  "s3cret",
		Logger: slog.New(slog.DiscardHandler),
	})
	srv := httptest.NewServer(api) // in production: an http.Server run by lifecycle
	defer srv.Close()

	post := func(path, body string) string {
		req, _ := http.NewRequest("POST", srv.URL+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer s3cret")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.Status + " " + strings.TrimSpace(string(b))
	}
	created := post("/v1/queues/mail/jobs", `{"kind":"email","payload":{"to":"ada@example.com"}}`)
	fmt.Println(created[:strings.Index(created, `,"priority"`)])
	fmt.Println(post("/v1/queues/mail/jobs", `{"kind":"email","priority":10}`))
	fmt.Println(post("/v1/queues/mail/jobs", `{"kind":"email","colour":"red"}`))
	// Output:
	// 201 Created {"id":1,"kind":"email","queue":"mail","payload":{"to":"ada@example.com"}
	// 400 Bad Request {"error":{"code":"invalid_request","message":"must be 0..9","field":"priority"}}
	// 400 Bad Request {"error":{"code":"invalid_request","message":"unknown field","field":"colour"}}
}
