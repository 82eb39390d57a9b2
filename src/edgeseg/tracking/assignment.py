"""Gated linear assignment in plain numpy: the matching ByteTrack asks ``lap.lapjv(cost, extend_cost=True,
cost_limit=thresh)`` for, without lap or scipy.

Only pairs cheaper than ``thresh`` may match, and leaving a row and a column unmatched costs ``thresh``, so the
result minimises ``sum(cost[i, j] - thresh)`` over the matched pairs. Tracking matrices are sparse once gated
(an object overlaps a few others at most), so the work is split into the connected components of the feasible
pairs: a pair that only sees each other is matched at once, and only components with a real choice go to the
exact solver, a shortest-augmenting-path (Jonker-Volgenant) solver on the component padded with "unmatched"
rows and columns. Its inner loop is vectorised over columns, so a component of k rows costs O(k^2) numpy calls.
"""

from __future__ import annotations

import numpy as np


def solve_square(cost: np.ndarray) -> np.ndarray:
    """``col_for_row`` of the minimum-cost perfect assignment of a square matrix (``inf`` = not allowed; a
    perfect assignment of finite cost must exist). The shortest augmenting path method, as in scipy's
    ``linear_sum_assignment`` (Crouse, 2016)."""
    n = cost.shape[0]
    u = np.zeros(n)
    v = np.zeros(n)
    col_for_row = np.full(n, -1, np.int64)
    row_for_col = np.full(n, -1, np.int64)
    for cur in range(n):
        shortest = np.full(n, np.inf)
        path = np.full(n, -1, np.int64)
        seen_rows = np.zeros(n, bool)
        seen_cols = np.zeros(n, bool)
        i, min_val, sink = cur, 0.0, -1
        while sink < 0:
            seen_rows[i] = True
            reduced = min_val + cost[i] - u[i] - v
            better = ~seen_cols & (reduced < shortest)
            shortest[better] = reduced[better]
            path[better] = i
            candidates = np.where(seen_cols, np.inf, shortest)
            lowest = candidates.min()
            if not np.isfinite(lowest):
                raise ValueError("no feasible assignment")
            ties = (candidates == lowest).nonzero()[0]
            free = ties[row_for_col[ties] < 0]
            j = int(free[0] if free.size else ties[0])  # prefer a free column on ties: the path ends there
            min_val = float(lowest)
            seen_cols[j] = True
            if row_for_col[j] < 0:
                sink = j
            else:
                i = int(row_for_col[j])
        u[cur] += min_val
        others = seen_rows.copy()
        others[cur] = False
        rows = others.nonzero()[0]
        u[rows] += min_val - shortest[col_for_row[rows]]
        v[seen_cols] -= min_val - shortest[seen_cols]
        j = sink
        while True:
            i = int(path[j])
            row_for_col[j] = i
            col_for_row[i], j = j, int(col_for_row[i])
            if i == cur:
                break
    return col_for_row


def _solve_small(cost: list[list[float]]) -> list[int]:
    """``solve_square`` for a handful of rows in plain Python: at this size numpy's per-call overhead costs
    more than the arithmetic."""
    n = len(cost)
    inf = float("inf")
    u, v = [0.0] * n, [0.0] * n
    col_for_row, row_for_col = [-1] * n, [-1] * n
    for cur in range(n):
        shortest, path = [inf] * n, [-1] * n
        seen_rows, seen_cols = [False] * n, [False] * n
        i, min_val, sink = cur, 0.0, -1
        while sink < 0:
            seen_rows[i] = True
            row, ui = cost[i], u[i]
            lowest, best = inf, -1
            for j in range(n):
                if seen_cols[j]:
                    continue
                r = min_val + row[j] - ui - v[j]
                if r < shortest[j]:
                    shortest[j], path[j] = r, i
                if shortest[j] < lowest or (shortest[j] == lowest and row_for_col[j] < 0):
                    lowest, best = shortest[j], j
            if best < 0 or lowest == inf:
                raise ValueError("no feasible assignment")
            min_val = lowest
            seen_cols[best] = True
            if row_for_col[best] < 0:
                sink = best
            else:
                i = row_for_col[best]
        u[cur] += min_val
        for r in range(n):
            if seen_rows[r] and r != cur:
                u[r] += min_val - shortest[col_for_row[r]]
        for j in range(n):
            if seen_cols[j]:
                v[j] -= min_val - shortest[j]
        j = sink
        while True:
            i = path[j]
            row_for_col[j] = i
            col_for_row[i], j = j, col_for_row[i]
            if i == cur:
                break
    return col_for_row


SMALL = 16  # padded components up to this size go to the plain-Python solver


def _solve_gated(cost: np.ndarray, thresh: float) -> list[tuple[int, int]]:
    """Exact gated matching of one component: pad with an "unmatched" partner per row and per column."""
    n, m = cost.shape
    big = np.full((n + m, n + m), np.inf)
    big[:n, :m] = np.where(cost < thresh, cost - thresh, np.inf)
    big[np.arange(n), m + np.arange(n)] = 0.0  # row i left unmatched
    big[n + np.arange(m), np.arange(m)] = 0.0  # column j left unmatched
    big[n:, m:] = 0.0  # dummy rows take the dummy columns the real rows did not
    col_for_row = _solve_small(big.tolist()) if n + m <= SMALL else solve_square(big).tolist()
    return [(i, col_for_row[i]) for i in range(n) if col_for_row[i] < m]


def linear_assignment(cost: np.ndarray, thresh: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(matches (K, 2) of [row, col], unmatched rows, unmatched cols)`` minimising ``sum(cost - thresh)``
    over matched pairs, each with ``cost < thresh``."""
    n, m = cost.shape
    if n == 0 or m == 0:
        return np.zeros((0, 2), np.int64), np.arange(n), np.arange(m)
    feasible = cost < thresh
    row_degree = feasible.sum(1)
    col_degree = feasible.sum(0)
    if row_degree.max() <= 1 and col_degree.max() <= 1:  # the usual frame: every candidate pair is alone
        rows, cols = np.nonzero(feasible)
        return np.stack([rows, cols], axis=1), (row_degree == 0).nonzero()[0], (col_degree == 0).nonzero()[0]
    # A pair that only sees each other is its own component: matched without a solver.
    lone = feasible & (row_degree[:, None] == 1) & (col_degree[None, :] == 1)
    rows, cols = np.nonzero(lone)
    lone_rows = lone.any(1)
    pending = ((row_degree > 0) & ~lone_rows).nonzero()[0]
    if pending.size:
        rows, cols = rows.tolist(), cols.tolist()
        done_rows = lone_rows.copy()
        for start in pending.tolist():
            if done_rows[start]:
                continue
            comp_rows = np.zeros(n, bool)
            comp_rows[start] = True
            comp_cols = np.zeros(m, bool)
            while True:  # grow the component to its closure over shared columns and rows
                new_cols = feasible[comp_rows].any(0) & ~comp_cols
                if not new_cols.any():
                    break
                comp_cols |= new_cols
                comp_rows |= feasible[:, new_cols].any(1)
            done_rows |= comp_rows
            r_idx, c_idx = comp_rows.nonzero()[0], comp_cols.nonzero()[0]
            for i, j in _solve_gated(cost[np.ix_(r_idx, c_idx)], thresh):
                rows.append(int(r_idx[i]))
                cols.append(int(c_idx[j]))
        rows, cols = np.asarray(rows, np.int64), np.asarray(cols, np.int64)
    matched_rows = np.zeros(n, bool)
    matched_rows[rows] = True
    matched_cols = np.zeros(m, bool)
    matched_cols[cols] = True
    matches = np.stack([rows, cols], axis=1).astype(np.int64, copy=False)
    return matches, (~matched_rows).nonzero()[0], (~matched_cols).nonzero()[0]
