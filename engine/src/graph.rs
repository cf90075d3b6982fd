//! The task DAG. Edges go dependency → dependent.

use std::collections::{HashMap, HashSet};
use std::fmt::Write;

use petgraph::algo::tarjan_scc;
use petgraph::stable_graph::{NodeIndex, StableDiGraph};
use petgraph::visit::{Dfs, NodeIndexable, Reversed};
use petgraph::Direction;

use crate::task::Node;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum GraphError {
    #[error("task `{task}` depends on unknown task `{dep}`")]
    UnknownDep {
        task: String,
        dep: String,
        index: usize,
    },
    /// `path` starts and ends with the same task: a → b → c → a.
    #[error("dependency cycle: {}", path.join(" → "))]
    Cycle { path: Vec<String> },
    #[error("unknown task `{0}`")]
    UnknownTask(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GraphFormat {
    Text,
    Dot,
    Mermaid,
    Json,
}

type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

pub struct Graph {
    g: StableDiGraph<Node, ()>,
    index: FastMap<String, NodeIndex>,
    /// Node indices in declaration order (stable output).
    order: Vec<NodeIndex>,
    /// Every node in the order [`Graph::select`] gives (found while checking for cycles).
    all: Vec<NodeIndex>,
}

impl Graph {
    pub fn new(nodes: Vec<Node>) -> Result<Self, GraphError> {
        let mut g = StableDiGraph::with_capacity(nodes.len(), nodes.len() * 2);
        let mut index = FastMap::with_capacity_and_hasher(nodes.len(), Default::default());
        let mut order = Vec::with_capacity(nodes.len());
        for n in nodes {
            let id = n.spec.id.clone();
            let i = g.add_node(n);
            index.insert(id, i);
            order.push(i);
        }
        let mut edges = Vec::new();
        for &i in &order {
            let spec = &g[i].spec;
            for (k, dep) in spec.deps.iter().enumerate() {
                let Some(&d) = index.get(dep) else {
                    return Err(GraphError::UnknownDep {
                        task: spec.id.clone(),
                        dep: dep.clone(),
                        index: k,
                    });
                };
                edges.push((d, i));
            }
        }
        for (d, i) in edges {
            // A dependency listed twice is one edge.
            g.update_edge(d, i, ());
        }
        let mut graph = Self {
            g,
            index,
            order,
            all: Vec::new(),
        };
        // The stable order of the whole graph, kept for `select`: it leaves out exactly the
        // nodes on or behind a cycle, so it is the cycle check too.
        graph.all = graph.stable_topo(&vec![true; graph.g.node_bound()]);
        if graph.all.len() != graph.order.len() {
            return Err(GraphError::Cycle {
                path: graph.find_cycle(),
            });
        }
        Ok(graph)
    }

    /// One cycle, in dependency order (a depends on b …), first task repeated at the end.
    fn find_cycle(&self) -> Vec<String> {
        let scc = tarjan_scc(&self.g)
            .into_iter()
            .find(|c| c.len() > 1 || self.g.contains_edge(c[0], c[0]))
            .expect("toposort found a cycle");
        let members: HashSet<NodeIndex> = scc.iter().copied().collect();
        // Start at the first-declared member; walk dependency edges inside the component.
        let start = *self.order.iter().find(|i| members.contains(i)).unwrap();
        let mut path = vec![start];
        let mut seen = HashSet::from([start]);
        let mut cur = start;
        loop {
            let deps: Vec<NodeIndex> = self.g[cur]
                .spec
                .deps
                .iter()
                .map(|d| self.index[d])
                .filter(|d| members.contains(d))
                .collect();
            if deps.contains(&start) {
                path.push(start);
                break;
            }
            match deps.into_iter().find(|d| !seen.contains(d)) {
                Some(next) => {
                    seen.insert(next);
                    path.push(next);
                    cur = next;
                }
                None => {
                    // Dead end inside the component: the members still name the cycle.
                    path.push(start);
                    break;
                }
            }
        }
        path.into_iter()
            .map(|i| self.g[i].spec.id.clone())
            .collect()
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.order.iter().map(|&i| self.g[i].spec.id.as_str())
    }

    /// One more than the largest node index: the size of a table indexed by node.
    pub fn node_bound(&self) -> usize {
        self.g.node_bound()
    }

    pub fn node(&self, i: NodeIndex) -> &Node {
        &self.g[i]
    }

    pub fn get(&self, id: &str) -> Option<&Node> {
        self.index.get(id).map(|&i| &self.g[i])
    }

    pub fn index_of(&self, id: &str) -> Option<NodeIndex> {
        self.index.get(id).copied()
    }

    pub fn dependents(&self, i: NodeIndex) -> impl Iterator<Item = NodeIndex> + '_ {
        self.g.neighbors_directed(i, Direction::Outgoing)
    }

    pub fn dependencies(&self, i: NodeIndex) -> impl Iterator<Item = NodeIndex> + '_ {
        self.g.neighbors_directed(i, Direction::Incoming)
    }

    /// The named tasks and everything they depend on, in topological order.
    /// No names: the whole graph.
    pub fn select(&self, names: &[String]) -> Result<Vec<NodeIndex>, GraphError> {
        if names.is_empty() {
            return Ok(self.all.clone());
        }
        // Indexed by node index: the graph never removes nodes, so indices are dense.
        let mut keep = vec![false; self.g.node_bound()];
        let rev = Reversed(&self.g);
        for n in names {
            let &start = self
                .index
                .get(n)
                .ok_or_else(|| GraphError::UnknownTask(n.clone()))?;
            let mut dfs = Dfs::new(rev, start);
            while let Some(x) = dfs.next(rev) {
                keep[x.index()] = true;
            }
        }
        Ok(self.stable_topo(&keep))
    }

    /// Kahn's algorithm, always taking the earliest-declared ready task: the order (and so
    /// what starts first under `-j`) follows the config file, not hash order.
    fn stable_topo(&self, keep: &[bool]) -> Vec<NodeIndex> {
        use std::cmp::Reverse;
        use std::collections::BinaryHeap;
        let mut indeg = vec![0usize; keep.len()];
        let mut heap = BinaryHeap::new();
        let mut n = 0;
        for &i in &self.order {
            if keep[i.index()] {
                n += 1;
                indeg[i.index()] = self.dependencies(i).filter(|d| keep[d.index()]).count();
                if indeg[i.index()] == 0 {
                    heap.push(Reverse(i.index()));
                }
            }
        }
        let mut out = Vec::with_capacity(n);
        while let Some(Reverse(i)) = heap.pop() {
            let i = NodeIndex::new(i);
            out.push(i);
            for d in self.dependents(i) {
                if keep[d.index()] {
                    indeg[d.index()] -= 1;
                    if indeg[d.index()] == 0 {
                        heap.push(Reverse(d.index()));
                    }
                }
            }
        }
        out
    }

    pub fn render(&self, nodes: &[NodeIndex], format: GraphFormat) -> String {
        let set: HashSet<NodeIndex> = nodes.iter().copied().collect();
        let id = |i: NodeIndex| self.g[i].spec.id.as_str();
        let deps_of = |i: NodeIndex| {
            let mut d: Vec<&str> = self.g[i]
                .spec
                .deps
                .iter()
                .map(String::as_str)
                .filter(|d| set.contains(&self.index[*d]))
                .collect();
            d.dedup();
            d
        };
        let mut out = String::new();
        match format {
            GraphFormat::Text => {
                for &i in nodes {
                    let deps = deps_of(i);
                    let _ = write!(out, "{} ({})", id(i), self.g[i].task.describe());
                    if !deps.is_empty() {
                        let _ = write!(out, " ← {}", deps.join(", "));
                    }
                    out.push('\n');
                }
            }
            GraphFormat::Dot => {
                out.push_str("digraph lifeos {\n  rankdir=LR;\n");
                for &i in nodes {
                    let _ = writeln!(
                        out,
                        "  \"{}\" [label=\"{}\\n{}\"];",
                        id(i),
                        id(i),
                        self.g[i].task.kind()
                    );
                }
                for &i in nodes {
                    for d in deps_of(i) {
                        let _ = writeln!(out, "  \"{d}\" -> \"{}\";", id(i));
                    }
                }
                out.push_str("}\n");
            }
            GraphFormat::Mermaid => {
                out.push_str("graph LR\n");
                let mid = |s: &str| s.replace(|c: char| !c.is_ascii_alphanumeric(), "_");
                for &i in nodes {
                    let _ = writeln!(
                        out,
                        "  {}[\"{} ({})\"]",
                        mid(id(i)),
                        id(i),
                        self.g[i].task.kind()
                    );
                }
                for &i in nodes {
                    for d in deps_of(i) {
                        let _ = writeln!(out, "  {} --> {}", mid(d), mid(id(i)));
                    }
                }
            }
            GraphFormat::Json => {
                let tasks: Vec<serde_json::Value> = nodes
                    .iter()
                    .map(|&i| {
                        serde_json::json!({
                            "id": id(i),
                            "kind": self.g[i].task.kind(),
                            "deps": deps_of(i),
                        })
                    })
                    .collect();
                out = serde_json::to_string_pretty(&serde_json::json!({ "tasks": tasks }))
                    .expect("json");
                out.push('\n');
            }
        }
        out
    }
}
