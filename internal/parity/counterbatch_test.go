package parity_test

import (
	"context"
	"strings"
	"testing"

	"github.com/alicebob/miniredis/v2"

	goredisbackend "github.com/distkit-go/distkit/backend/goredis"
	"github.com/distkit-go/distkit/backend/memory"
	"github.com/distkit-go/distkit/internal/parity"
)

// TestCounterBatchParity: counterscript.Batch's Lua source (run by
// miniredis) and its Go twin (run by the memory backend) give the same
// outcome for every operation, and on each the batch gives what one script
// call per operation gives. (conformance.RunParity runs the same scenario
// against every real Redis client kind.)
func TestCounterBatchParity(t *testing.T) { batchParity(t, "CounterBatch") }

// TestInstanceCounterBatchParity: the same for icscript.OpBatch against
// icscript.Op.
func TestInstanceCounterBatchParity(t *testing.T) { batchParity(t, "InstanceCounterBatch") }

func batchParity(t *testing.T, name string) {
	var sc parity.Scenario
	for _, s := range parity.Scenarios() {
		if s.Name == name {
			sc = s
		}
	}
	if sc.Run == nil {
		t.Fatal("no scenario " + name)
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
	ctx := context.Background()
	goTwin := sc.Run(ctx, memory.New(memory.Options{}), "p")
	luaOut := sc.Run(ctx, lua, "p")
	for i := range max(len(goTwin), len(luaOut)) {
		var g, l string
		if i < len(goTwin) {
			g = goTwin[i]
		}
		if i < len(luaOut) {
			l = luaOut[i]
		}
		if g != l {
			t.Errorf("step %d: Go twin %s, Lua %s", i, g, l)
		}
		if strings.Contains(g, "same false") {
			t.Errorf("step %d: Go twin: batch differs from single calls: %s", i, g)
		}
		if strings.Contains(l, "same false") {
			t.Errorf("step %d: Lua: batch differs from single calls: %s", i, l)
		}
	}
	if testing.Verbose() {
		t.Log(strings.Join(goTwin, "\n"))
	}
}
