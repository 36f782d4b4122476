"""What notebooks show: prose with live numbers and tables (:mod:`.output`), and shared figures (:mod:`.plots`)."""
