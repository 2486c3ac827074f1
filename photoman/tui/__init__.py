"""The Textual terminal UI (`photoman tui`)."""
