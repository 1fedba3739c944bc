"""The report: plots of the long-tail results (:mod:`eqlv2.report.plots`)."""
