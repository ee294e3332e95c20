package sqlitestore

import (
	"context"
	"flag"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/sluicehq/sluice/jobs"
)

var (
	benchJobs  = flag.Int("benchjobs", 20_000, "jobs per iteration of BenchmarkFetchComplete")
	benchBatch = flag.Int("benchbatch", 1000, "Enqueue batch, Fetch limit and Complete batch of BenchmarkFetchComplete")
)

// BenchmarkFetchComplete measures the store's throughput on a temp file
// with the default Config (WAL, synchronous=NORMAL), in jobs/s:
//
//   - Enqueue: -benchjobs no-op jobs in batches of -benchbatch;
//   - FetchComplete: burning them down with Fetch(limit -benchbatch) and
//     one Complete(Succeeded) per fetched batch, as one worker would.
//
// On the shared 2-vCPU dev machine (AMD EPYC), Go 1.26.8,
// modernc.org/sqlite v1.62.0. The host's speed varies by more than the
// changes measured here (Enqueue, whose code did not change between the
// two runs below, went from 61,800 to 103,200 jobs/s), so compare builds
// only side by side, alternating:
//
//	go test -run='^$' -bench=FetchComplete -benchtime=3x -count=5 ./jobs/sqlitestore/
//	  commit 4c09a45, load 0.1-1.4: Enqueue 58,600-63,200 jobs/s (median
//	  61,800), FetchComplete 51,200-66,500 (median 61,100);
//	  commit 6fd2f7c, a faster hour: Enqueue 95,100-105,800 (median
//	  103,200), FetchComplete 89,000-94,900 (median 93,700)
//	go test -run='^$' -bench=FetchComplete/FetchComplete -benchtime=1x -count=3 ./jobs/sqlitestore/ -args -benchjobs=200000 -benchbatch=500
//	  200,000 jobs, batch 500: 56,600-65,800 jobs/s (4c09a45),
//	  88,200-91,600 (6fd2f7c, the faster hour)
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
		s, err := Open(ctx, filepath.Join(b.TempDir(), "bench.db"), Config{})
		if err != nil {
			b.Fatal(err)
		}
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
			b.StopTimer()
			s.Close()
			b.StartTimer()
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
			b.StopTimer()
			s.Close()
			b.StartTimer()
		}
		b.ReportMetric(float64(n*b.N)/elapsed.Seconds(), "jobs/s")
	})
}
