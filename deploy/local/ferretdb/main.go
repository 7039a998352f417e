// Command ferretdb-local runs FerretDB 1.24 with its SQLite backend, embedded as a library.
//
// A plain `go install` of FerretDB's own command panics at start (its generated version file
// is not part of the module), so the local stack builds this small wrapper instead.
package main

import (
	"context"
	"flag"
	"log"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/FerretDB/FerretDB/ferretdb"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:27017", "TCP address to listen on (loopback by default)")
	dir := flag.String("state-dir", ".local/ferretdb/data", "directory holding the SQLite databases")
	// WAL mode with synchronous=NORMAL: a commit survives a crash or SIGKILL of this process (the WAL is
	// in the OS page cache) but not a power loss; FULL (SQLite's default) fsyncs every commit, which
	// costs ~45% of FerretDB's CPU per write and 3x its latency (tests/benchmarks). Right for a local stack.
	synchronous := flag.String("synchronous", "normal", "SQLite synchronous pragma: off, normal, full or extra")
	flag.Parse()

	if err := os.MkdirAll(*dir, 0o755); err != nil {
		log.Fatalf("state dir: %v", err)
	}
	// Connection-level INFO lines would dominate the log under load; warnings and errors are kept.
	// The embedded library has no telemetry reporter and no debug listener (those live in FerretDB's
	// own command), so neither needs turning off here.
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	f, err := ferretdb.New(&ferretdb.Config{
		Logger:    logger,
		Listener:  ferretdb.ListenerConfig{TCP: *listen},
		Handler:   "sqlite",
		SQLiteURL: "file:" + *dir + "/?_pragma=synchronous(" + *synchronous + ")",
	})
	if err != nil {
		log.Fatalf("ferretdb: %v", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log.Printf("ferretdb listening on %s, sqlite state in %s", *listen, *dir)
	f.Run(ctx)
}
