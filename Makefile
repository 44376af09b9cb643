.PHONY: run test lint bench llamacpp
# The two commands of the README.
run:
	scripts/run.sh
test:
	scripts/test.sh
lint:
	scripts/lint.sh
bench:
	scripts/bench.sh
llamacpp:
	scripts/bootstrap.sh && scripts/extras.sh llamacpp
