# Builds the four servers of the homework at the top of the tree.
CARGO ?= cargo
SERVERS := httpserver forkserver threadserver poolserver

.PHONY: all test clean run demo

all:
	$(CARGO) build --release --bins
	@for s in $(SERVERS); do cp -f target/release/$$s $$s; done

# The whole suite: unit tests and the integration tests under tests/.
test:
	$(CARGO) test --release

run: all
	./threadserver --files www --port 8000

clean:
	$(CARGO) clean
	rm -f $(SERVERS)
