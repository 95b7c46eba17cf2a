"""GPU-aware scheduling (DESIGN.md §7).

* ``allocation``: agents' capacity and allocations in memory; replica requests; results;
* ``selectors``: concentrated, dispersed and round-robin, one small strategy each;
* ``placement``: the pure rules (filters, device choice, messages) and ``PlacementPlanner``;
* ``scheduler``: the pass over pending replicas, one transaction (``repositories.scheduling``);
* ``leader``: one scheduling leader among managers (a PostgreSQL advisory lock).
"""
