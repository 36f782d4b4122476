"""What notebooks and dashboards show: prose with live numbers and tables (:mod:`.output`), shared matplotlib
figures (:mod:`.plots`), SVG charts that redraw in well under a millisecond (:mod:`.svgchart`), and the
colour-blind-safe palette every dashboard uses (:mod:`.palette`)."""
