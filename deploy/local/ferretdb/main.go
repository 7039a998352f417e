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
		SQLiteURL: "file:" + *dir + "/",
	})
	if err != nil {
		log.Fatalf("ferretdb: %v", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log.Printf("ferretdb listening on %s, sqlite state in %s", *listen, *dir)
	f.Run(ctx)
}
