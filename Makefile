.PHONY: run test lint bench
# The two commands of the README.
run:
	scripts/run.sh
test:
	scripts/test.sh
lint:
	scripts/lint.sh
bench:
	scripts/bench.sh
