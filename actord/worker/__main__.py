"""``python -m actord.worker``: the entry point the daemon execs for each worker."""

from actord.worker.main import main

if __name__ == "__main__":
    main()
