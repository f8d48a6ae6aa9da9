"""Connected components of a graph held in a Spark DataFrame, never collected.

Near-duplicate pairs link documents into clusters (A~B and B~C put A, B and C together,
whether or not A~C was found). The clusters are the connected components of the pair
graph, computed with the alternating large-star / small-star algorithm (Kiveris et al.,
"Connected Components in MapReduce and Beyond", SoCC 2014): each round is two
groupBy/join passes; the graph shrinks to stars around each component's smallest node in
O(log^2 n) rounds (a handful in practice), with no node's neighbourhood ever gathered on
one machine beyond its own edges.

Nodes are 64-bit integers; each round's edges are checkpointed so the query plan does not
grow with the rounds.
"""

from __future__ import annotations

import logging
from typing import Any

from llm_core.errors import StageError

log = logging.getLogger(__name__)


def _both_ways(edges: Any) -> Any:
    from pyspark.sql import functions as F

    return edges.select("u", "v").unionByName(edges.select(F.col("v").alias("u"), F.col("u").alias("v")))


def large_star(edges: Any) -> Any:
    """Link every neighbour larger than a node to the smallest of the node's neighbourhood."""
    from pyspark.sql import functions as F

    both = _both_ways(edges)
    smallest = both.groupBy("u").agg(F.least(F.min("v"), F.col("u")).alias("m"))
    return (both.join(smallest, "u").where(F.col("v") > F.col("u"))
            .select(F.col("v").alias("u"), F.col("m").alias("v")).distinct())


def small_star(edges: Any) -> Any:
    """Link a node and its smaller neighbours to the smallest of them."""
    from pyspark.sql import functions as F

    down = (edges.where(F.col("u") != F.col("v"))
            .select(F.greatest("u", "v").alias("u"), F.least("u", "v").alias("v")))
    smallest = down.groupBy("u").agg(F.min("v").alias("m"))
    linked = down.join(smallest, "u")
    neighbours = linked.where(F.col("v") != F.col("m")).select(F.col("v").alias("u"), F.col("m").alias("v"))
    return neighbours.unionByName(smallest.select("u", F.col("m").alias("v"))).distinct()


def _is_star_forest(edges: Any) -> bool:
    """Every edge child -> parent, each child with one parent, no parent with a parent:
    then each star is a whole component and its centre is the component's smallest node.
    (One Spark job: a round's cost is mostly jobs, not data, on small graphs.)"""
    from pyspark.sql import functions as F

    children = edges.select(F.col("u").alias("v"), F.lit(1).alias("has_parent")).distinct()
    row = (edges.join(children, "v", "left")
           .agg(F.count("*").alias("n"), F.countDistinct("u").alias("children"),
                F.count("has_parent").alias("nested")).first())
    return row["n"] == row["children"] and row["nested"] == 0


def connected_components(edges: Any, max_iterations: int = 64) -> Any:
    """``edges`` (columns ``u``, ``v``: longs) -> DataFrame (``node``, ``component``) with
    one row per node that has an edge; ``component`` is the smallest node of its component."""
    from pyspark.sql import functions as F

    current = (edges.select(F.col("u").cast("long"), F.col("v").cast("long"))
               .where(F.col("u") != F.col("v"))
               .select(F.greatest("u", "v").alias("u"), F.least("u", "v").alias("v")).distinct()
               .localCheckpoint())
    for iteration in range(1, max_iterations + 1):
        current = small_star(large_star(current)).localCheckpoint()
        if _is_star_forest(current):
            log.info("connected components: converged after %d rounds", iteration)
            break
    else:
        raise StageError("dedupe", f"connected components did not converge in {max_iterations} rounds")
    roots = current.select(F.col("v").alias("node")).distinct().withColumn("component", F.col("node"))
    return current.select(F.col("u").alias("node"), F.col("v").alias("component")).unionByName(roots)
