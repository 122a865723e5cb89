"""Disjoint sets over 0..n-1 (the connected components of an equivalence relation), shared by math clustering,
the math-verify worker and free-form clustering."""

from __future__ import annotations


class UnionFind:
    """Disjoint sets over 0..n-1; a component's root is its smallest member."""

    __slots__ = ("parent",)

    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        p = self.parent
        while p[i] != i:
            p[i] = p[p[i]]
            i = p[i]
        return i

    def union(self, i: int, j: int) -> None:
        ri, rj = self.find(i), self.find(j)
        if ri != rj:
            self.parent[max(ri, rj)] = min(ri, rj)
