# Builds the four servers of the homework at the top of the tree.
CARGO ?= cargo
SERVERS := httpserver forkserver threadserver poolserver

.PHONY: all test limits browser clean run demo bench answers stalls fuzz

SOURCES := Cargo.toml Cargo.lock $(shell find src -name '*.rs')

all: $(SERVERS)

# Each server is rebuilt when any source has changed since it was built.
# cargo builds all four at once; each rule copies its own.
$(SERVERS): $(SOURCES)
	$(CARGO) build --release --bins
	cp -f target/release/$@ $@

# The whole suite: unit tests and the integration tests under tests/,
# the browser test among them. Each test binary runs on its own, so the
# connection-limit tests (tests/limits.rs) share the machine with no other.
test: browser
	$(CARGO) test --release

# The tests that hold thousands of connections at the machine's limits, alone.
limits:
	$(CARGO) test --release --test limits

# The browser test drives Debian's chromium. Install it if it is missing and
# we can (as root); otherwise say how. HTTPSERVER_SKIP_BROWSER_TEST=1 skips
# the browser test on purpose.
browser:
	@if [ -z "$$HTTPSERVER_SKIP_BROWSER_TEST" ] && ! command -v chromium >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "make test: installing chromium for the browser test"; \
	    apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; \
	  else \
	    echo "make test: the browser test needs chromium. Install it with:"; \
	    echo "  sudo apt-get install -y chromium"; \
	    echo "(or set HTTPSERVER_SKIP_BROWSER_TEST=1 to skip the browser test)"; \
	    exit 1; \
	  fi; \
	fi

# www/ (or DIR) on localhost, port 8000 (or PORT): make run PORT=8123 DIR=docs
PORT ?= 8000
DIR ?= www

run: all
	./threadserver --files $(DIR) --port $(PORT) --bind localhost

# www/ served on a free port, and a proxy in front of it on PORT (8000), both
# on localhost. Stops, with the reason, if either cannot listen; Ctrl-C stops
# both.
demo: all
	@log=$$(mktemp); trap 'kill $$origin 2>/dev/null; wait; rm -f "$$log"' EXIT INT TERM; \
	./threadserver --files www --port 0 --bind localhost --quiet >"$$log" 2>&1 & origin=$$!; \
	until grep -q '^Listening on port' "$$log"; do \
	  if ! kill -0 $$origin 2>/dev/null; then \
	    echo "make demo: the origin server could not start:"; cat "$$log"; exit 1; \
	  fi; \
	  sleep 0.1; \
	done; \
	upstream=$$(sed -n 's/^Listening on port \([0-9]*\).*/\1/p' "$$log"); \
	echo "open http://localhost:$(PORT)/  (the proxy on $(PORT) relays to www/ served on $$upstream; Ctrl-C stops both)"; \
	./threadserver --proxy localhost:$$upstream --port $(PORT) --bind localhost \
	  || { status=$$?; echo "make demo: the proxy on port $(PORT) stopped (exit status $$status)"; exit 1; }

# The relays a user of the homework would write or pick instead, built for
# make bench: the homework's design in C, and tokio's copy_bidirectional.
C_RELAY := bench/peers/c-relay/c-relay
TOKIO_RELAY := bench/peers/tokio-relay/target/release/tokio-relay

$(C_RELAY): bench/peers/c-relay/relay.c
	$(CC) -O2 -Wall -Wextra -pthread -o $@ $<

$(TOKIO_RELAY): bench/peers/tokio-relay/Cargo.toml bench/peers/tokio-relay/Cargo.lock bench/peers/tokio-relay/src/main.rs
	$(CARGO) build --release --manifest-path bench/peers/tokio-relay/Cargo.toml

# Side by side with HAProxy, nginx, socat and the two relays above; writes
# bench/RESULTS.md. Not run by CI.
bench: all $(C_RELAY) $(TOKIO_RELAY)
	python3 bench/bench.py

# How long a client that stops reading holds each server, by the wall clock,
# with nginx beside us. Not run by CI.
stalls: all
	python3 bench/stalled.py

# Coverage-guided fuzzing of the head reader, the path resolver, the listing
# and the command line (fuzz/, a crate of its own): FUZZ_SECS per target
# (default 60). Not run by CI; make test replays the committed corpus.
fuzz:
	bash fuzz/run.sh

# The homework's Performance task: ab against the four servers; writes
# results/answers.md and results/time_per_request.svg. Not run by CI.
answers: all
	python3 bench/answers.py

clean:
	$(CARGO) clean
	rm -f $(SERVERS) $(C_RELAY)
	rm -rf bench/peers/tokio-relay/target fuzz/target fuzz/out
