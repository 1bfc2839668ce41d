"""The flat geometry the kernels read, and the constants of its layout (no code: numbers only).

Built by :mod:`tracker.geofence.build`, with :mod:`.records` and :mod:`.cells`; read by
:mod:`.routes`, :mod:`.zones` and :mod:`.crossings`. All coordinates are metres in the index's
:class:`~tracker.geofence.projection.LocalProjection`.

* ``R`` (routes) = ``(corridor, route_start, rb)``: route slot ``r``'s record is
  ``rb[route_start[r]:route_start[r + 1]]``: the number of chunks ``nc``, then per chunk
  ``x0, y0, x1, y1, vo, nv`` (its box; ``nv`` vertices from record offset ``vo``), then the vertices
  (x, y pairs). A chunk holds at most ``CHUNK`` segments of one part; chunks of a part share their
  end vertex; segments never join parts.
* ``Z`` (zones, exact geometry, for the rare exhaustive scans and crossings) = ``(zone_box,
  zone_ring_off, ring_chunk_off, chunk_v, chunk_box, xy)``: ``zone_ring_off[z] ..`` are the rings of
  every polygon part of zone slot ``z`` (shells and holes alike, each closed: first vertex == last),
  cut into chunks over the vertices ``xy`` (``chunk_v[c]``: vertex range, ``chunk_box[c]``: box).
* ``G`` (the cell index, see :mod:`.cells`) = ``(cell_off, e_zone, cell_start, zb, zf)``: square
  cells; cell ``c = cy * nx + cx`` has the *entries* ``cell_off[c] .. cell_off[c + 1]`` (zone slots
  ``e_zone``, ascending), one per zone whose boundary lies within ``E`` (the exact range, >= the
  search radius) of the cell or whose interior holds the whole cell. Their records follow each other
  in ``zb[cell_start[c]:cell_start[c + 1]]``: first the zones that may hold a point of the cell, then
  the others by ascending ``L``. A record is a header of ``ZH`` doubles, ``L, fl, (nd | np << 16 |
  k << 32 | flags << 48), (z | nf << 32), fo`` (small integers packed exactly into doubles), then
  ``np`` point-in-polygon edges ``ax, ay, bx, by``, then ``nd`` near distance edges ``lb, ax, ay, bx,
  by``; the ``nf`` far distance edges of the entry are at ``zf[fo:]``, their smallest bound ``fl``
  (a far edge is ``ZF`` doubles, ``lb, j``: its ends are the zones' vertices ``j`` and ``j + 1``, read
  from the copy of the zones' ``xy`` that ends ``zf``, from ``zf[zf[0]]`` on, x and y by turns: the
  same doubles as a near edge's, in a fifth of the room; at city scale the far edges were 24.5 MiB):

  - ``flags`` bit 0 ``BOUNDARY`` (the boundary may cross the cell: point-in-polygon by ray casting),
    bit 1 ``INSIDE`` (without BOUNDARY: the whole cell is inside; with it: the parity of the edges
    that cross the whole row to the right of the cell, which need no test);
  - ``L``: a lower bound of the distance from any point of the cell to the zone's boundary; ``k``:
    the entry's number in the cell (zone order: where its flag goes while a batch is checked);
  - distance edges: every edge within ``E`` of the cell, ascending by ``lb`` (a lower bound of its
    distance from the cell), so "is an edge within a" stops at the first bound above ``a``; those up
    to ``NEAR_M`` from the cell are in the record, the others (read by few fixes) in ``zf``. The
    edges that meet the cell come first (``lb`` = 0);
  - point-in-polygon edges: the edges of the cell's row that a ray towards +x from the cell may cross
    and that do not meet the cell (those are the distance edges of bound 0, tested from there), minus
    the ones crossing the whole row to the right (their parity is the INSIDE bit).
* ``P`` (the parameter vector, float64 [``P_SIZE``]): the projection, the grid and the radii, at the
  ``P_*`` positions below.
"""

from __future__ import annotations

import numpy as np

# A bounding-box distance is a lower bound of the true distance, but both are rounded; boxes are only
# used to *skip* work when the lower bound is beyond the radius by this relative margin.
SLACK = 1.0 + 1e-9
# Distances are computed exactly only below a cap; anything else is reported as sqrt(cap2) with
# cap2 = cap² · SLACK + TINY2, which is strictly above the cap even when the cap is 0.
TINY2 = 1e-18

CHUNK = 8
"""Segments per chunk of a route part or a zone ring (see the module docstring)."""
MARGIN = 1e-3
"""Metres of safety in every bound the cell index relies on (rounding is below 1e-6 m in a city)."""
BLOCK = 2048
"""Fixes per unit of work (one prange iteration in the parallel passes)."""
SUB = 32
"""Fixes whose records are fetched together (see :mod:`tracker.geofence.kernels`)."""
TOUCH = 24
"""Cache lines of a cell's records fetched ahead (the rest is rarely read: edges sorted by bound)."""
ROUTE_HEAD = 3
"""Cache lines of a route's record fetched ahead: its chunk boxes (then only the nearest chunk)."""
SCRATCH = 5  # per fix in a group: route record start, end, cell records start, end, nearest chunk

# record layouts
RC = 6  # per route chunk: x0, y0, x1, y1, vo, nv
ZH = 5  # per zone entry: L, fl, (nd, np, k, flags), (z, nf), fo (see the module docstring)
ZP = 4  # per point-in-polygon edge: ax, ay, bx, by
ZD = 5  # per distance edge: lb, ax, ay, bx, by
ZF = 2  # per far distance edge: lb, j (its vertices are j and j + 1 of the copy of the zones' xy in zf)

BOUNDARY = np.uint8(1)
INSIDE = np.uint8(2)

# flags of one (fix, entry) pair while a batch is checked
POSSIBLE = 1
CERTAIN = 2
PENDING = 4  # outside: decided in the second pass
SCAN = 8  # inside, accuracy beyond the exact range: certain after a scan of the whole boundary

# parameter vector P
P_LON0, P_LAT0, P_KX, P_KY, P_GX0, P_GY0, P_CELL, P_NX, P_NY, P_RADIUS, P_EXACT = range(11)
P_SIZE = 11
