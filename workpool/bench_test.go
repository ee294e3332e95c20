package workpool

import (
	"context"
	"errors"
	"runtime"
	"testing"
)

var sink uint64

// spin is a short CPU task: about 200 xorshift rounds.
func spin(context.Context) error {
	x := uint64(88172645463325252)
	for range 200 {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
	}
	if x == 0 {
		sink++
	}
	return nil
}

// BenchmarkSubmit measures one submitter pushing short CPU tasks through a
// pool of GOMAXPROCS workers with a bounded queue and the Wait policy,
// including the pool's start and Close.
func BenchmarkSubmit(b *testing.B) {
	const tasks = 10_000
	b.ReportAllocs()
	for b.Loop() {
		p := New(Config{Workers: runtime.GOMAXPROCS(0), QueueSize: 1024, Policy: Wait})
		for range tasks {
			if _, err := p.Submit(context.Background(), spin); err != nil {
				b.Fatal(err)
			}
		}
		if _, err := p.Close(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*tasks), "ns/task")
}

// BenchmarkGo is BenchmarkSubmit through Go, which returns no handle and
// recycles tasks.
func BenchmarkGo(b *testing.B) {
	const tasks = 10_000
	b.ReportAllocs()
	for b.Loop() {
		p := New(Config{Workers: runtime.GOMAXPROCS(0), QueueSize: 1024, Policy: Wait})
		for range tasks {
			if err := p.Go(context.Background(), spin); err != nil {
				b.Fatal(err)
			}
		}
		if _, err := p.Close(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*tasks), "ns/task")
}

// BenchmarkRejectFull measures a refusal from a pool whose workers and
// queue are full.
func BenchmarkRejectFull(b *testing.B) {
	p := New(Config{Workers: 1, QueueSize: 1})
	release := make(chan struct{})
	block := func(context.Context) error { <-release; return nil }
	for range 2 {
		if _, err := p.Submit(context.Background(), block); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.Submit(context.Background(), spin); !errors.Is(err, ErrQueueFull) {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	close(release)
	if _, err := p.Close(context.Background()); err != nil {
		b.Fatal(err)
	}
}
