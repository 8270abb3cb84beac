# Builds the four servers of the homework at the top of the tree.
CARGO ?= cargo
SERVERS := httpserver forkserver threadserver poolserver

.PHONY: all test clean run demo bench

all:
	$(CARGO) build --release --bins
	@for s in $(SERVERS); do cp -f target/release/$$s $$s; done

# The whole suite: unit tests and the integration tests under tests/.
test:
	$(CARGO) test --release

run: all
	./threadserver --files www --port 8000

# www/ served on 8080, and a proxy in front of it on 8000. Ctrl-C stops both.
demo: all
	@trap 'kill $$origin 2>/dev/null; wait' EXIT INT TERM; \
	./threadserver --files www --port 8080 --quiet & origin=$$!; \
	echo "open http://localhost:8000/  (the proxy on 8000 relays to www/ served on 8080; Ctrl-C stops both)"; \
	./threadserver --proxy localhost:8080 --port 8000

# Side by side with HAProxy, nginx and socat; writes bench/RESULTS.md. Not run by CI.
bench: all
	python3 bench/bench.py

clean:
	$(CARGO) clean
	rm -f $(SERVERS)
