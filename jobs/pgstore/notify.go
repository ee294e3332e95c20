package pgstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sluicehq/sluice/jobs"
)

// ListenBuffer is the capacity of the channel Listen returns. When the
// receiver falls this far behind, further notifications are dropped:
// they are hints (see jobs.Notifier).
const ListenBuffer = 256

// Listen implements jobs.Notifier. It opens a dedicated connection (with
// the pool's settings, not taken from the pool), LISTENs on the store's
// channel, and delivers each notification: Queue set when jobs due now
// became waiting in that queue, CancelID when a running job's cancellation
// was requested. After an error it reconnects, backing off from 100ms to
// 5s (notifications sent meanwhile are lost). When ctx ends or the store
// is closed, its goroutine closes the connection and then, as its last
// act, the channel. A receiver that lags ListenBuffer notifications
// behind loses the next ones.
//
// Listen returns an error (wrapping jobs.ErrUnavailable when the database
// cannot be reached) if it cannot start listening within the store's
// Timeout.
func (s *Store) Listen(ctx context.Context) (<-chan jobs.Notification, error) {
	const op = "listen"
	cctx, cancel, err := s.begin(ctx, op)
	if err != nil {
		return nil, err
	}
	conn, err := s.listenConn(cctx)
	if err != nil {
		err = s.wrap(cctx, op, err)
		cancel()
		return nil, err
	}
	cancel()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		cctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = conn.Close(cctx)
		cancel()
		return nil, fmt.Errorf("pgstore: %s: %w", op, jobs.ErrClosed)
	}
	s.listeners.Add(1)
	s.mu.Unlock()

	out := make(chan jobs.Notification, ListenBuffer) // closed by the goroutine below, its only sender
	go func() {
		defer s.listeners.Done()
		defer close(out)
		lctx, stop := context.WithCancel(ctx)
		defer stop()
		unhook := context.AfterFunc(s.bg, stop) // Close ends it too
		defer unhook()
		s.listenLoop(lctx, conn, out)
	}()
	return out, nil
}

// listenConn connects outside the pool and LISTENs.
func (s *Store) listenConn(ctx context.Context) (*pgx.Conn, error) {
	conn, err := pgx.ConnectConfig(ctx, s.pool.Config().ConnConfig.Copy())
	if err != nil {
		return nil, err
	}
	if _, err := conn.Exec(ctx, "LISTEN "+quoteIdent(s.channel)); err != nil {
		_ = conn.Close(context.WithoutCancel(ctx))
		return nil, err
	}
	return conn, nil
}

// listenLoop delivers conn's notifications on out until ctx ends,
// reconnecting after errors. It closes the connection it holds.
func (s *Store) listenLoop(ctx context.Context, conn *pgx.Conn, out chan<- jobs.Notification) {
	const minWait, maxWait = 100 * time.Millisecond, 5 * time.Second
	closeConn := func() {
		if conn != nil {
			cctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_ = conn.Close(cctx)
			cancel()
			conn = nil
		}
	}
	defer closeConn()
	wait := minWait
	for {
		if conn == nil {
			if !sleepCtx(ctx, wait) {
				return
			}
			wait = min(2*wait, maxWait)
			var cctx context.Context = ctx
			var cancel context.CancelFunc = func() {}
			if s.timeout > 0 {
				cctx, cancel = context.WithTimeout(ctx, s.timeout)
			}
			c, err := s.listenConn(cctx)
			cancel()
			if err != nil {
				if ctx.Err() == nil {
					s.log.Warn("pgstore: listen: reconnecting failed", "wait", wait, "err", err)
				}
				continue
			}
			conn = c
			s.log.Info("pgstore: listen: reconnected")
		}
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			closeConn()
			if ctx.Err() != nil {
				return
			}
			s.log.Warn("pgstore: listen: connection lost, reconnecting", "err", err)
			continue
		}
		wait = minWait
		ev, ok := parseNotification(n.Payload)
		if !ok {
			continue
		}
		select {
		case out <- ev:
		default:
			s.log.Debug("pgstore: listen: receiver lagging, notification dropped", "notification", ev)
		}
	}
}

// parseNotification reads a payload sent by the schema's triggers or the store:
// "queue:<name>", "due:<unix ns>:<name>" (jobs scheduled for later, the
// earliest at that time; schema step 4) or "cancel:<id>".
func parseNotification(payload string) (jobs.Notification, bool) {
	if q, ok := strings.CutPrefix(payload, "queue:"); ok {
		return jobs.Notification{Queue: q}, true
	}
	if rest, ok := strings.CutPrefix(payload, "due:"); ok {
		ns, q, ok := strings.Cut(rest, ":")
		n, err := strconv.ParseInt(ns, 10, 64)
		if !ok || err != nil || n == 0 {
			return jobs.Notification{}, false
		}
		return jobs.Notification{Queue: q, At: fromNanos(n)}, true
	}
	if id, ok := strings.CutPrefix(payload, "cancel:"); ok {
		n, err := strconv.ParseInt(id, 10, 64)
		return jobs.Notification{CancelID: n}, err == nil && n != 0
	}
	return jobs.Notification{}, false
}

// Lead implements jobs.Elector with one statement on the leader row: it
// takes the term when the row is free, expired (its end at or before now)
// or already owner's. Terms are compared with the callers' clocks, so the
// nodes' clocks should agree to well within ttl.
func (s *Store) Lead(ctx context.Context, now time.Time, owner string, ttl time.Duration) (bool, error) {
	const op = "lead"
	ctx, cancel, err := s.begin(ctx, op)
	if err != nil {
		return false, err
	}
	defer cancel()
	lead := false
	err = s.retry(ctx, op, func(ctx context.Context) error {
		var got string
		err := s.pool.QueryRow(ctx, s.q.lead, owner, nanos(now.Add(ttl)), nanos(now)).Scan(&got)
		lead = err == nil
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		return err
	})
	if err != nil {
		return false, s.wrap(ctx, op, err)
	}
	return lead, nil
}

// Resign implements jobs.Elector: it clears the leader row if owner holds
// it.
func (s *Store) Resign(ctx context.Context, owner string) error {
	const op = "resign"
	ctx, cancel, err := s.begin(ctx, op)
	if err != nil {
		return err
	}
	defer cancel()
	err = s.retry(ctx, op, func(ctx context.Context) error {
		_, err := s.pool.Exec(ctx, s.q.resign, owner)
		return err
	})
	return s.wrap(ctx, op, err)
}
