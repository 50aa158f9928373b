"""What a stage copies: the sources a user names, listed into a flat, sorted list of files."""
