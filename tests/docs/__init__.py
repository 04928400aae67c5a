"""The user guide covers every command, setting, rejection reason and run status."""
