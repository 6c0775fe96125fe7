package main

import (
	"testing"

	logging "github.com/ipfs/go-log/v2"
)

func TestLevels(t *testing.T) {
	subs := []string{"parley/node", "parley/daemon", "dht", "pubsub", "swarm2"}
	for _, tc := range []struct {
		lvl      logging.LogLevel
		wantBase logging.LogLevel
		want     map[string]logging.LogLevel // nil: every subsystem at the base
	}{
		{logging.LevelInfo, logging.LevelError, map[string]logging.LogLevel{"parley/node": logging.LevelInfo, "parley/daemon": logging.LevelInfo, "dht": logging.LevelFatal, "dht/RtRefreshManager": logging.LevelFatal}},
		{logging.LevelWarn, logging.LevelError, map[string]logging.LogLevel{"parley/node": logging.LevelWarn, "parley/daemon": logging.LevelWarn, "dht": logging.LevelFatal, "dht/RtRefreshManager": logging.LevelFatal}},
		{logging.LevelError, logging.LevelError, map[string]logging.LogLevel{"parley/node": logging.LevelError, "parley/daemon": logging.LevelError, "dht": logging.LevelFatal, "dht/RtRefreshManager": logging.LevelFatal}},
		{logging.LevelDebug, logging.LevelDebug, nil},
	} {
		base, per := levels(tc.lvl, subs)
		if base != tc.wantBase || len(per) != len(tc.want) {
			t.Errorf("levels(%s) = %s, %v; want %s, %v", tc.lvl, base, per, tc.wantBase, tc.want)
			continue
		}
		for s, l := range tc.want {
			if per[s] != l {
				t.Errorf("levels(%s)[%s] = %s, want %s", tc.lvl, s, per[s], l)
			}
		}
	}
}
