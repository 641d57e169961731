"""``campaign rehearse``: a spec's whole step graph run in miniature (``scale``) before it spends a
cluster hour, what happened in it (``outcome``), and the cost of the real campaign projected from
what the rehearsal measured (``forecast``)."""
