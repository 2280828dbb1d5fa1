package main

import (
	"context"
	"fmt"
	"strconv"

	"github.com/distkit-go/distkit/internal/inspect"
	"github.com/distkit-go/distkit/primitives/instancecounter"
)

type jsonSlice struct {
	Instance       string `json:"instance"`
	InstanceBase64 string `json:"instance_base64,omitempty"`
	Value          int64  `json:"value"`
	Alive          bool   `json:"alive"`
	Registered     bool   `json:"registered"`
	Closed         bool   `json:"closed"`
}

type jsonICounter struct {
	Key        string      `json:"key"`
	KeyBase64  string      `json:"key_base64,omitempty"`
	Exists     bool        `json:"exists"`
	Cumulative int64       `json:"cumulative"`
	Stored     int64       `json:"stored"`
	Epoch      int64       `json:"epoch"`
	Slices     []jsonSlice `json:"slices"`
}

func icounterGet(ctx context.Context, c *cli, keys []string) error {
	ics, now, err := inspect.ReadInstanceCounters(ctx, c.conn.backend(), c.o.prefix, keys)
	if err != nil {
		return err
	}
	if c.o.json {
		out := struct {
			Prefix       string         `json:"prefix"`
			PrefixBase64 string         `json:"prefix_base64,omitempty"`
			ServerTime   string         `json:"server_time"`
			Counters     []jsonICounter `json:"counters"`
		}{c.o.prefix, b64(c.o.prefix), jsonTime(now), []jsonICounter{}}
		for _, x := range ics {
			j := jsonICounter{Key: x.Key, KeyBase64: b64(x.Key), Exists: x.Exists, Cumulative: x.Cumulative,
				Stored: x.Stored, Epoch: x.Epoch, Slices: []jsonSlice{}}
			for _, s := range x.Slices {
				j.Slices = append(j.Slices, jsonSlice{Instance: s.Instance, InstanceBase64: b64(s.Instance),
					Value: s.Value, Alive: s.Alive, Registered: s.Registered, Closed: s.Closed})
			}
			out.Counters = append(out.Counters, j)
		}
		if err := c.writeJSON(out); err != nil {
			return err
		}
	} else {
		rows := [][]string{{"KEY", "CUMULATIVE", "STORED", "EPOCH", "INSTANCES"}}
		slices := [][]string{{"KEY", "INSTANCE", "SLICE", "ALIVE"}}
		for _, x := range ics {
			if !x.Exists {
				rows = append(rows, []string{disp(x.Key), "-", "-", "-", "-"})
				continue
			}
			dead := 0
			for _, s := range x.Slices {
				alive := "yes"
				if s.Closed {
					alive = "yes (closed)"
				}
				if !s.Alive {
					dead++
					alive = "no"
					if !s.Registered {
						alive = "no (unregistered)"
					}
				}
				slices = append(slices, []string{disp(x.Key), disp(s.Instance), strconv.FormatInt(s.Value, 10), alive})
			}
			inst := strconv.Itoa(len(x.Slices))
			if dead > 0 {
				inst += fmt.Sprintf(" (%d dead)", dead)
			}
			rows = append(rows, []string{disp(x.Key), strconv.FormatInt(x.Cumulative, 10), strconv.FormatInt(x.Stored, 10),
				strconv.FormatInt(x.Epoch, 10), inst})
		}
		c.table(rows)
		if len(slices) > 1 {
			fmt.Fprintln(c.stdout)
			c.table(slices)
		}
	}
	for _, x := range ics {
		if !x.Exists {
			return notFound("instance counter %s not found under prefix %s", disp(x.Key), disp(c.o.prefix))
		}
	}
	return nil
}

type jsonInstance struct {
	ID              string `json:"id"`
	IDBase64        string `json:"id_base64,omitempty"`
	Alive           bool   `json:"alive"`
	Closed          bool   `json:"closed"`
	LastHeartbeatAt string `json:"last_heartbeat_at"`
	ExpiresAt       string `json:"expires_at"`
	Slices          int    `json:"slices"`
}

func checkDeadAfter(c *cli, _ []string) error {
	if c.o.deadAfter < instancecounter.MinDeadAfter {
		return usageErr("--dead-after %v is below the minimum %v", c.o.deadAfter, instancecounter.MinDeadAfter)
	}
	return nil
}

func icounterInstances(ctx context.Context, c *cli, _ []string) error {
	is, err := inspect.ReadInstances(ctx, c.conn.backend(), c.o.prefix)
	if err != nil {
		return err
	}
	if c.o.json {
		out := struct {
			Prefix       string         `json:"prefix"`
			PrefixBase64 string         `json:"prefix_base64,omitempty"`
			ServerTime   string         `json:"server_time"`
			DeadAfterMs  int64          `json:"dead_after_ms"`
			Instances    []jsonInstance `json:"instances"`
		}{c.o.prefix, b64(c.o.prefix), jsonTime(is.Now), ms(c.o.deadAfter), []jsonInstance{}}
		for _, x := range is.List {
			out.Instances = append(out.Instances, jsonInstance{ID: x.ID, IDBase64: b64(x.ID), Alive: x.Alive, Closed: x.Closed,
				LastHeartbeatAt: jsonTime(x.Expires.Add(-c.o.deadAfter)), ExpiresAt: jsonTime(x.Expires), Slices: x.Slices})
		}
		return c.writeJSON(out)
	}
	rows := [][]string{{"ID", "ALIVE", "LAST HEARTBEAT", "EXPIRES", "SLICES"}}
	for _, x := range is.List {
		alive := "yes"
		switch {
		case x.Closed:
			alive = "no (closed)"
		case !x.Alive:
			alive = "no"
		}
		rows = append(rows, []string{disp(x.ID), alive, when(x.Expires.Add(-c.o.deadAfter), is.Now), when(x.Expires, is.Now),
			strconv.Itoa(x.Slices)})
	}
	c.table(rows)
	return nil
}
