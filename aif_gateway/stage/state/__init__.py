"""What a stage keeps under ``DEST/.aifstage``: the lock and layout (statedir.py), the journal
that a resumed stage reads (journal.py), and what a finished stage leaves, its manifest and
completion marker (completion.py)."""
