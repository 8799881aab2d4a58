//! The generated road network: a jittered street grid with residential streets, arterials and
//! expressways, depots and customers on its intersections, and fastest-path routing.

use std::{cmp::Ordering, collections::BinaryHeap};

use crate::geo::Point;
use crate::rng::Rng;
use crate::route::Route;

const KMH: f64 = 1.0 / 3.6;

/// A street grid.
#[derive(Debug, Clone)]
pub struct Grid {
    side: usize,
    nodes: Vec<Point>,
    /// Outgoing edges per node: (to, speed limit m/s).
    edges: Vec<Vec<(usize, f64)>>,
}

impl Grid {
    /// A `side` x `side` grid with `spacing` metres between streets, centred on the origin.
    /// Every 5th street is a 70 km/h arterial, the border and middle streets are 90 km/h
    /// expressways, a few blocks are 30 km/h zones, the rest is 50 km/h.
    pub fn generate(rng: &mut Rng, side: usize, spacing: f64) -> Grid {
        let side = side.max(2);
        let half = (side - 1) as f64 * spacing / 2.0;
        let jitter = spacing * 0.15;
        let mut nodes = Vec::with_capacity(side * side);
        for row in 0..side {
            for col in 0..side {
                nodes.push(Point {
                    x: col as f64 * spacing - half + rng.range(-jitter, jitter),
                    y: row as f64 * spacing - half + rng.range(-jitter, jitter),
                });
            }
        }
        let class = |line: usize| -> f64 {
            if line == 0 || line == side - 1 || line == side / 2 {
                90.0 * KMH
            } else if line.is_multiple_of(5) {
                70.0 * KMH
            } else {
                50.0 * KMH
            }
        };
        let mut edges = vec![Vec::with_capacity(4); side * side];
        let link = |a: usize, b: usize, limit: f64, edges: &mut Vec<Vec<(usize, f64)>>| {
            edges[a].push((b, limit));
            edges[b].push((a, limit));
        };
        for row in 0..side {
            for col in 0..side {
                let id = row * side + col;
                let zone = |rng: &mut Rng, limit: f64| {
                    if limit <= 50.0 * KMH && rng.chance(0.05) {
                        30.0 * KMH
                    } else {
                        limit
                    }
                };
                if col + 1 < side {
                    let limit = zone(rng, class(row));
                    link(id, id + 1, limit, &mut edges);
                }
                if row + 1 < side {
                    let limit = zone(rng, class(col));
                    link(id, id + side, limit, &mut edges);
                }
            }
        }
        Grid { side, nodes, edges }
    }

    /// Number of intersections.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True when the grid has no intersections (never, by construction).
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The position of intersection `node`.
    pub fn node(&self, node: usize) -> Point {
        self.nodes
            .get(node)
            .copied()
            .unwrap_or(Point { x: 0.0, y: 0.0 })
    }

    /// Streets per side.
    pub fn side(&self) -> usize {
        self.side
    }

    /// The fastest route from `from` to `to` (Dijkstra on travel time at the speed limit).
    pub fn route(&self, from: usize, to: usize) -> Route {
        let n = self.nodes.len();
        let mut best = vec![f64::INFINITY; n];
        let mut prev = vec![usize::MAX; n];
        let mut heap = BinaryHeap::new();
        if let Some(b) = best.get_mut(from) {
            *b = 0.0;
            heap.push(Entry {
                time: 0.0,
                node: from,
            });
        }
        while let Some(Entry { time, node }) = heap.pop() {
            if node == to {
                break;
            }
            if time > best[node] {
                continue;
            }
            for &(next, limit) in &self.edges[node] {
                let t = time + self.nodes[node].dist(self.nodes[next]) / limit;
                if t < best[next] {
                    best[next] = t;
                    prev[next] = node;
                    heap.push(Entry {
                        time: t,
                        node: next,
                    });
                }
            }
        }
        let mut path = vec![to];
        let mut at = to;
        while at != from && prev.get(at).is_some_and(|&p| p != usize::MAX) {
            at = prev[at];
            path.push(at);
        }
        path.reverse();
        let points: Vec<Point> = path.iter().map(|&i| self.node(i)).collect();
        let limits: Vec<f64> = path
            .windows(2)
            .map(|w| {
                self.edges[w[0]]
                    .iter()
                    .find(|(to, _)| *to == w[1])
                    .map_or(50.0 * KMH, |&(_, limit)| limit)
            })
            .collect();
        Route::new(&points, &limits)
    }
}

/// A heap entry ordered by smallest travel time first.
#[derive(Debug, PartialEq)]
struct Entry {
    time: f64,
    node: usize,
}

impl Eq for Entry {}

impl Ord for Entry {
    fn cmp(&self, other: &Entry) -> Ordering {
        other
            .time
            .total_cmp(&self.time)
            .then_with(|| other.node.cmp(&self.node))
    }
}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Entry) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Grid {
    /// The streets as polylines: each row and each column of the grid, from end to end, cut
    /// where two neighbouring intersections are not linked. One line per street rather than
    /// one per block keeps a map of the city to a few tens of kilobytes.
    pub fn streets(&self) -> Vec<Vec<Point>> {
        let side = self.side;
        let linked = |a: usize, b: usize| {
            self.edges
                .get(a)
                .is_some_and(|e| e.iter().any(|&(to, _)| to == b))
        };
        let mut out = Vec::new();
        for line in 0..side {
            for ids in [
                (0..side).map(|i| line * side + i).collect::<Vec<_>>(),
                (0..side).map(|i| i * side + line).collect::<Vec<_>>(),
            ] {
                let mut current: Vec<Point> = Vec::new();
                for pair in ids.windows(2) {
                    if linked(pair[0], pair[1]) {
                        if current.is_empty() {
                            current.push(self.node(pair[0]));
                        }
                        current.push(self.node(pair[1]));
                    } else if current.len() >= 2 {
                        out.push(std::mem::take(&mut current));
                    } else {
                        current.clear();
                    }
                }
                if current.len() >= 2 {
                    out.push(current);
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Concern;

    #[test]
    fn routes_connect_their_ends_along_streets() {
        let mut rng = Rng::new(3, 0, Concern::World);
        let grid = Grid::generate(&mut rng, 12, 400.0);
        let r = grid.route(0, grid.len() - 1);
        assert_eq!(r.points()[0], grid.node(0));
        assert_eq!(*r.points().last().unwrap(), grid.node(grid.len() - 1));
        // Manhattan lower bound: at least the straight line, at most a detour of a few blocks.
        let straight = grid.node(0).dist(grid.node(grid.len() - 1));
        assert!(r.length() >= straight && r.length() < straight * 2.0);
        for leg in 0..r.legs() {
            let limit = r.limit(leg) * 3.6;
            assert!([30.0, 50.0, 70.0, 90.0]
                .iter()
                .any(|l| (l - limit).abs() < 1e-9));
        }
    }

    #[test]
    fn a_route_to_itself_is_empty() {
        let mut rng = Rng::new(3, 0, Concern::World);
        let grid = Grid::generate(&mut rng, 4, 400.0);
        assert_eq!(grid.route(5, 5).length(), 0.0);
    }
}
