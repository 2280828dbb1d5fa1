package parity_test

import (
	"context"
	"slices"
	"testing"

	"github.com/alicebob/miniredis/v2"

	"github.com/distkit-go/distkit/backend"
	goredisbackend "github.com/distkit-go/distkit/backend/goredis"
	"github.com/distkit-go/distkit/backend/memory"
	"github.com/distkit-go/distkit/internal/parity"
)

// TestInstanceLiveParity: the Heartbeat script's live-instances count
// (Lua run by miniredis, Go twin run by the memory backend) is the same,
// step by step, and is the expected one: the bare status without "live",
// {status, live} with it, live counting the unexpired, unclosed instances.
// (conformance.RunParity runs the same scenario against every real Redis
// client kind.)
func TestInstanceLiveParity(t *testing.T) {
	var sc parity.Scenario
	for _, s := range parity.Scenarios() {
		if s.Name == "InstanceCounterLive" {
			sc = s
		}
	}
	if sc.Run == nil {
		t.Fatal("no InstanceCounterLive scenario")
	}
	mr := miniredis.NewMiniRedis()
	if err := mr.StartAddr("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	defer mr.Close()
	lua, err := goredisbackend.FromURL("redis://" + mr.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer lua.Close()
	mem := memory.New(memory.Options{})
	defer mem.Close()
	ctx := context.Background()
	want := []string{
		"arr:absent,0", "text:absent", "arr:joined",
		"arr:ok,1", "text:ok", "text:ok",
		"arr:joined", "arr:ok,2", "arr:ok,2",
		"arr:joined", "arr:ok,2",
		"text:ok", "arr:ok,1", "arr:absent,1",
		"arr:joined", "arr:ok,2",
		"text:ok", "arr:ok,1",
		"arr:dup,1",
		"arr:joined", "arr:ok,2",
		"text:ok", "arr:ok,1",
	}
	for name, b := range map[string]backend.Backend{"Go twin": mem, "Lua": lua} {
		if got := sc.Run(ctx, b, "p"); !slices.Equal(got, want) {
			t.Errorf("%s:\n got  %v\n want %v", name, got, want)
		}
	}
}
