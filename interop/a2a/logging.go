package a2a

import (
	"context"
	"log/slog"

	logging "github.com/ipfs/go-log/v2"
)

// sdkLogger is the logger a2a-go writes to: parley's log, subsystem
// parley/a2a-go, one level lower than a2a-go says (it warns of every
// refused request, which is a client's mistake, not the node's).
func sdkLogger() *slog.Logger {
	return slog.New(demoted{logging.SlogHandler()}).With("logger", "parley/a2a-go")
}

type demoted struct{ h slog.Handler }

func lower(l slog.Level) slog.Level {
	if l >= slog.LevelError {
		return slog.LevelWarn
	}
	return slog.LevelDebug
}

func (d demoted) Enabled(ctx context.Context, l slog.Level) bool { return d.h.Enabled(ctx, lower(l)) }

func (d demoted) Handle(ctx context.Context, r slog.Record) error {
	r.Level = lower(r.Level)
	return d.h.Handle(ctx, r)
}

func (d demoted) WithAttrs(as []slog.Attr) slog.Handler { return demoted{d.h.WithAttrs(as)} }
func (d demoted) WithGroup(name string) slog.Handler    { return demoted{d.h.WithGroup(name)} }
