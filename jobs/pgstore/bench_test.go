package pgstore

import (
	"context"
	"flag"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/sluicehq/sluice/jobs"
)

var (
	benchJobs    = flag.Int("benchjobs", 20_000, "jobs per iteration of BenchmarkFetchComplete")
	benchBatch   = flag.Int("benchbatch", 1000, "Enqueue batch, Fetch limit and Complete batch of BenchmarkFetchComplete")
	benchSenders = flag.Int("benchsenders", 16, "goroutines calling Enqueue at once in BenchmarkEnqueueSingle")
)

// BenchmarkFetchComplete measures the store's throughput on the server of
// $SLUICE_TEST_PG, in a fresh schema per iteration, in jobs/s:
//
//   - Enqueue: -benchjobs no-op jobs in batches of -benchbatch;
//   - FetchComplete: burning them down with Fetch(limit -benchbatch) and
//     one Complete(Succeeded) per fetched batch, as one worker would.
//
// Medians on the shared 2-vCPU dev machine (load 1.4-3.5 from other
// work), Go 1.26.8, pgx v5.12.0, PostgreSQL 15.20 on loopback with default
// settings (synchronous_commit on, fsync on), sharing the cores with the
// benchmark:
//
//	SLUICE_TEST_PG='postgres://postgres@127.0.0.1:5432/test?sslmode=disable' \
//	  go test -run='^$' -bench=FetchComplete -benchtime=3x -count=5 ./jobs/pgstore/
//	  20,000 jobs, batch 1,000: Enqueue 70,700 jobs/s (62,900-83,000), FetchComplete 31,200 jobs/s (28,900-35,300)
//	SLUICE_TEST_PG=... go test -run='^$' -bench=FetchComplete -benchtime=1x -count=3 ./jobs/pgstore/ -args -benchjobs=200000 -benchbatch=500
//	  200,000 jobs, batch 500: Enqueue 74,000 jobs/s (70,000-78,700), FetchComplete 25,500 jobs/s (22,300-26,200)
func BenchmarkFetchComplete(b *testing.B) {
	n, batch := *benchJobs, *benchBatch
	ctx := context.Background()
	nj := jobs.NewJob{Kind: "noop", Queue: "bench"}
	if err := nj.Normalize(t0); err != nil {
		b.Fatal(err)
	}
	newJobs := make([]jobs.NewJob, batch)
	for i := range newJobs {
		newJobs[i] = nj
	}
	fill := func(b *testing.B, s *Store) {
		for done := 0; done < n; done += batch {
			if _, err := s.Enqueue(ctx, t0, "bench", newJobs[:min(batch, n-done)]); err != nil {
				b.Fatal(err)
			}
		}
	}
	openB := func(b *testing.B) *Store {
		s := open(b, Config{})
		if err := s.PutQueue(ctx, jobs.QueueConfig{Name: "bench", Capacity: n + batch}); err != nil {
			b.Fatal(err)
		}
		return s
	}

	b.Run(fmt.Sprintf("Enqueue/jobs=%d/batch=%d", n, batch), func(b *testing.B) {
		var elapsed time.Duration
		for b.Loop() {
			b.StopTimer()
			s := openB(b)
			b.StartTimer()
			start := time.Now()
			fill(b, s)
			elapsed += time.Since(start)
		}
		b.ReportMetric(float64(n*b.N)/elapsed.Seconds(), "jobs/s")
	})

	b.Run(fmt.Sprintf("FetchComplete/jobs=%d/batch=%d", n, batch), func(b *testing.B) {
		var elapsed time.Duration
		outcomes := make([]jobs.Outcome, batch)
		for b.Loop() {
			b.StopTimer()
			s := openB(b)
			fill(b, s)
			b.StartTimer()
			start := time.Now()
			now := t0.Add(time.Second)
			total := 0
			for {
				js, err := s.Fetch(ctx, now, "bench", "w", batch, time.Minute)
				if err != nil {
					b.Fatal(err)
				}
				if len(js) == 0 {
					break
				}
				for i, j := range js {
					outcomes[i] = jobs.Outcome{Attempt: jobs.Attempt{ID: j.ID, Attempt: j.Attempt}, Kind: jobs.Succeeded}
				}
				applied, err := s.Complete(ctx, now, "w", outcomes[:len(js)])
				if err != nil {
					b.Fatal(err)
				}
				for _, ok := range applied {
					if !ok {
						b.Fatal("outcome not applied")
					}
				}
				total += len(js)
			}
			elapsed += time.Since(start)
			if total != n {
				b.Fatalf("burned %d jobs, want %d", total, n)
			}
		}
		b.ReportMetric(float64(n*b.N)/elapsed.Seconds(), "jobs/s")
	})
}

// BenchmarkEnqueueSingle measures single-job Enqueue calls into one queue
// from -benchsenders goroutines at once (as the HTTP API makes them), in
// calls/s, on the server of $SLUICE_TEST_PG; concurrent calls share
// transactions (see Enqueue).
//
//	SLUICE_TEST_PG=... go test -run='^$' -bench=EnqueueSingle -count=5 ./jobs/pgstore/
func BenchmarkEnqueueSingle(b *testing.B) {
	ctx := context.Background()
	s := open(b, Config{MaxConns: int32(*benchSenders) + 4})
	if err := s.PutQueue(ctx, jobs.QueueConfig{Name: "bench", Capacity: 1 << 30}); err != nil {
		b.Fatal(err)
	}
	nj := jobs.NewJob{Kind: "noop", Queue: "bench"}
	if err := nj.Normalize(t0); err != nil {
		b.Fatal(err)
	}
	b.SetParallelism(max(*benchSenders/runtime.GOMAXPROCS(0), 1))
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		batch := []jobs.NewJob{nj}
		for pb.Next() {
			if _, err := s.Enqueue(ctx, t0, "bench", batch); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "calls/s")
}
