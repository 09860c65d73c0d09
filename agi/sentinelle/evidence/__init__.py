"""What an admin shows an auditor: export, explain, report, retention and the
audit of recorded attempts. Read-mostly; every judgement comes from the core."""
