package main

import (
	"os"
	"path/filepath"
	"testing"
)

// go test -json may split a benchmark's result line over several output events (the name
// before the run, the figures after): the report joins them before reading the line.
func TestReadJSONJoinsSplitResultLines(t *testing.T) {
	stream := `{"Action":"start","Package":"p"}
{"Action":"output","Package":"p","Output":"goos: linux\n"}
{"Action":"output","Package":"p","Output":"BenchmarkHandler/path=duplicate-2         \t"}
{"Action":"output","Package":"p","Output":"   16436\t     76490 ns/op\t  62.78 MB/s\t   12485 B/op\t     162 allocs/op\n"}
{"Action":"output","Package":"p","Output":"BenchmarkHandler/interleaved-2 \t 1986\t 820817 ns/op\t 1.231 duplicate/floor\n"}
{"Action":"output","Package":"p","Output":"    bench_test.go:43: payload: 4802 bytes\n"}
{"Action":"pass","Package":"p"}
`
	path := filepath.Join(t.TempDir(), "out.json")
	if err := os.WriteFile(path, []byte(stream), 0o644); err != nil {
		t.Fatal(err)
	}
	r := &report{}
	if err := r.read([]string{path}, ""); err != nil {
		t.Fatal(err)
	}
	if v, ok := r.value("BenchmarkHandler/path=duplicate", "allocs/op"); !ok || v != 162 {
		t.Errorf("allocs/op = %v, %v", v, ok)
	}
	if v, ok := r.value("BenchmarkHandler/interleaved", "duplicate/floor"); !ok || v != 1.231 {
		t.Errorf("duplicate/floor = %v, %v", v, ok)
	}
	if len(r.failed) != 0 {
		t.Errorf("failed: %v", r.failed)
	}
}
