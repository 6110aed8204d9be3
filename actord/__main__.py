"""``python -m actord``: the CLI."""

from actord.cli import main

main()
