package bench

import (
	"os"
	"testing"

	"github.com/refbridge/refbridge/shared/lambdaruntime"
)

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(child()) // the memory benchmark's measured process (memory_test.go)
	}
	code := m.Run()
	lambdaruntime.RemoveBuilds()
	os.Exit(code)
}
