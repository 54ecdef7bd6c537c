package wait

import (
	"context"
	"testing"
	"time"
)

func TestBackoffBounds(t *testing.T) {
	for attempt := range 40 {
		want := min(10*time.Millisecond<<min(attempt, 20), time.Second)
		for range 100 {
			if d := Backoff(attempt, 10*time.Millisecond, time.Second); d < want/2 || d > want {
				t.Fatalf("attempt %d: %v outside [%v, %v]", attempt, d, want/2, want)
			}
		}
	}
}

func TestSleepEndsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	if Sleep(ctx, time.Hour) || time.Since(start) > time.Second {
		t.Fatal("Sleep outlived its context")
	}
	if !Sleep(context.Background(), time.Millisecond) {
		t.Fatal("Sleep reported a live context as ended")
	}
}
