//! One matcher for exact, prefix and wildcard patterns, serving subscriptions,
//! registrations and permissions alike.
//!
//! A [`Matcher<V>`] maps `(pattern, policy)` to a value `V` (a subscription id, a
//! registration id, a permission) and answers two questions about a concrete URI:
//!
//! - [`Matcher::for_each_match`]: every entry that matches, as the broker needs (each
//!   matching subscription gets the event once).
//! - [`Matcher::best_match`]: the one entry the dealer routes a call to, under the spec's
//!   precedence for pattern-based registrations (see below).
//!
//! # Semantics, from the spec (advanced profile, pattern-based subscription/registration)
//!
//! - **Exact**: the pattern equals the URI.
//! - **Prefix**: the pattern is a *string* prefix of the URI, not a prefix in components:
//!   `com.myapp.topic.emergency` matches `com.myapp.topic.emergency-low` (the spec lists that
//!   very example) and `com.myapp.topic.emergency` itself, but not `com.myapp.topic.emerge`.
//!   `com.example.` matches `com.example.x` but not `com.example`; the empty pattern matches
//!   everything.
//! - **Wildcard**: the pattern and the URI have the same number of components, and each
//!   non-empty component of the pattern equals the URI's; an empty component matches any one
//!   component.
//!
//! Best match (the spec's "Calls matching multiple registrations"): an exact entry if there
//! is one; else the longest matching prefix pattern; else the wildcard pattern whose run of
//! concrete components before the first wildcard is longest, ties broken by the run before
//! the second wildcard, and so on (`a1.b2.c33..e5` beats `a1.b2..d4.e5` for
//! `a1.b2.c33.d4.e5`; `a1.b2..d4.e5..g7` beats `a1.b2..d4..f6.g7`). The spec measures prefix
//! length in components; two distinct prefix patterns that both match one URI always differ
//! in string length, so "longest string" agrees with it where it speaks and decides the case
//! it does not (`a.b` against `a.bc` for `a.bcd`). Comparing the wildcard runs in order is
//! the same as comparing the patterns component by component with "concrete" above
//! "wildcard", so two distinct matching patterns never tie: the best match is unique.
//! One line of the spec's worked example says "no prefix match" for `a1.b2.c3.d4.e5` and
//! picks a wildcard, although the example's prefix registrations `a1.b2.c3` and
//! `a1.b2.c3.d4` are string prefixes of that URI; this module follows the spec's rules
//! (longest prefix, `a1.b2.c3.d4`), not that line.
//!
//! # Structure
//!
//! Exact patterns live in a hash map ([`crate::hash::Map`]): one lookup, no allocation.
//! Wildcard patterns live in a trie over components with one extra "any" edge per node; the
//! best match is the first hit of a depth-first walk that tries the concrete edge before the
//! "any" edge. Prefix patterns live in a trie over all but their last component, and each is
//! keyed by the node its head leads to and its last (possibly partial, possibly empty)
//! component; each node keeps the distinct lengths of those last components, so a URI
//! component is tested with one hash lookup per distinct length. Each trie keeps all its
//! edges (and the prefix trie all its tails) in one hash table keyed by `(node, label)`
//! rather than a map per node, which halves the memory per pattern (measured: about 190
//! bytes per prefix pattern and 250 per wildcard pattern of ~20 bytes, 60 per exact one).
//! Insert, remove and lookup cost is proportional to the number of components (plus, for
//! wildcards, the branches a URI can take through the trie).
//!
//! # What it does not do
//!
//! It does not validate URIs or patterns (that is [`crate::uri`]; the matcher's semantics
//! are defined for any string, and the router validates before inserting). It does not keep
//! sets of sessions per pattern: `V` does. It does not bound the number of entries: the
//! router bounds subscriptions and registrations per session. It caps prefix and wildcard
//! patterns at [`MAX_PATTERN_COMPONENTS`] components, because the wildcard walk recurses
//! once per component and a peer chooses the patterns.

use std::fmt;
use std::hash::BuildHasher;
use std::num::NonZeroU32;

use hashbrown::HashTable;

use crate::hash::{Map, State};
use crate::uri::MatchPolicy;

/// The most components a prefix or wildcard pattern may have. Real URIs have a handful;
/// the cap bounds the recursion of the wildcard walk and the trie's depth.
pub const MAX_PATTERN_COMPONENTS: usize = 128;

/// Entries keyed by `(pattern, policy)`, looked up by concrete URI.
#[derive(Clone, Debug)]
pub struct Matcher<V> {
    exact: Map<Box<str>, V>,
    prefix: PrefixTrie<V>,
    wildcard: WildcardTrie<V>,
}

/// One entry of a [`Matcher`], as lookups and iteration report it.
#[derive(Debug)]
pub struct Match<'a, V> {
    /// The entry's policy.
    pub policy: MatchPolicy,
    /// The entry's pattern, as inserted.
    pub pattern: &'a str,
    /// The entry's value.
    pub value: &'a V,
}

// Manual impls: a derive would demand `V: Clone`, but a `Match` holds only references.
impl<V> Clone for Match<'_, V> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<V> Copy for Match<'_, V> {}

/// Why an entry could not be inserted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum MatcherError {
    /// A prefix or wildcard pattern has more than [`MAX_PATTERN_COMPONENTS`] components.
    TooManyComponents {
        /// How many components the pattern has.
        components: usize,
    },
}

impl fmt::Display for MatcherError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooManyComponents { components } => write!(
                f,
                "pattern has {components} components, more than the {MAX_PATTERN_COMPONENTS} allowed"
            ),
        }
    }
}

impl std::error::Error for MatcherError {}

impl<V> Default for Matcher<V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<V> Matcher<V> {
    /// An empty matcher.
    pub fn new() -> Self {
        Self {
            exact: Map::default(),
            prefix: PrefixTrie::new(),
            wildcard: WildcardTrie::new(),
        }
    }

    /// Inserts an entry, or replaces the value of an existing one and returns the old value.
    pub fn insert(
        &mut self,
        pattern: &str,
        policy: MatchPolicy,
        value: V,
    ) -> Result<Option<V>, MatcherError> {
        if policy != MatchPolicy::Exact {
            // A pattern has one more component than it has dots.
            let components = pattern.bytes().filter(|&b| b == b'.').count() + 1;
            if components > MAX_PATTERN_COMPONENTS {
                return Err(MatcherError::TooManyComponents { components });
            }
        }
        Ok(match policy {
            MatchPolicy::Exact => match self.exact.get_mut(pattern) {
                // Replacing must not allocate a second key for the same pattern.
                Some(slot) => Some(std::mem::replace(slot, value)),
                None => {
                    self.exact.insert(pattern.into(), value);
                    None
                }
            },
            MatchPolicy::Prefix => self.prefix.insert(pattern, value),
            MatchPolicy::Wildcard => self.wildcard.insert(pattern, value),
        })
    }

    /// The value of the entry `(pattern, policy)`.
    pub fn get(&self, pattern: &str, policy: MatchPolicy) -> Option<&V> {
        match policy {
            MatchPolicy::Exact => self.exact.get(pattern),
            MatchPolicy::Prefix => self.prefix.get(pattern).map(|t| &t.value),
            MatchPolicy::Wildcard => self.wildcard.get(pattern).map(|t| &t.value),
        }
    }

    /// The value of the entry `(pattern, policy)`, mutably.
    pub fn get_mut(&mut self, pattern: &str, policy: MatchPolicy) -> Option<&mut V> {
        match policy {
            MatchPolicy::Exact => self.exact.get_mut(pattern),
            MatchPolicy::Prefix => self.prefix.get_mut(pattern).map(|t| &mut t.value),
            MatchPolicy::Wildcard => self.wildcard.get_mut(pattern).map(|t| &mut t.value),
        }
    }

    /// Removes the entry `(pattern, policy)` and returns its value; trie nodes that no longer
    /// lead anywhere are freed.
    pub fn remove(&mut self, pattern: &str, policy: MatchPolicy) -> Option<V> {
        match policy {
            MatchPolicy::Exact => self.exact.remove(pattern),
            MatchPolicy::Prefix => self.prefix.remove(pattern),
            MatchPolicy::Wildcard => self.wildcard.remove(pattern),
        }
    }

    /// How many entries there are.
    pub fn len(&self) -> usize {
        self.exact.len() + self.prefix.len + self.wildcard.len
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every entry, exact ones first, then prefix, then wildcard. The order within a policy
    /// is unspecified but deterministic (the maps use a fixed hasher).
    pub fn iter(&self) -> impl Iterator<Item = Match<'_, V>> + '_ {
        let exact = self.exact.iter().map(|(pattern, value)| Match {
            policy: MatchPolicy::Exact,
            pattern,
            value,
        });
        let prefix = self.prefix.iter().map(|t| t.to_match(MatchPolicy::Prefix));
        let wildcard = self
            .wildcard
            .iter()
            .map(|t| t.to_match(MatchPolicy::Wildcard));
        exact.chain(prefix).chain(wildcard)
    }

    /// Calls `f` once for every entry that matches `uri`: the exact entry, then prefix
    /// entries from shortest to longest, then wildcard entries. Allocates nothing.
    pub fn for_each_match<'a>(&'a self, uri: &str, mut f: impl FnMut(Match<'a, V>)) {
        if let Some((pattern, value)) = self.exact.get_key_value(uri) {
            f(Match {
                policy: MatchPolicy::Exact,
                pattern,
                value,
            });
        }
        // Empty tries are common (a realm with no pattern subscriptions) and cost nothing.
        if self.prefix.len != 0 {
            self.prefix
                .walk(uri, |t| f(t.to_match(MatchPolicy::Prefix)), false);
        }
        if self.wildcard.len != 0 {
            self.wildcard.walk(ROOT, Some(uri), &mut |t| {
                f(t.to_match(MatchPolicy::Wildcard))
            });
        }
    }

    /// The single entry a call to `uri` is routed to under the spec's registration
    /// precedence (see the module doc): exact, else the longest prefix, else the best
    /// wildcard. Allocates nothing.
    pub fn best_match(&self, uri: &str) -> Option<Match<'_, V>> {
        if let Some((pattern, value)) = self.exact.get_key_value(uri) {
            return Some(Match {
                policy: MatchPolicy::Exact,
                pattern,
                value,
            });
        }
        if self.prefix.len != 0 {
            let mut longest = None;
            // The walk reports longer prefixes after shorter ones, so the last one wins.
            self.prefix.walk(uri, |t| longest = Some(t), true);
            if let Some(t) = longest {
                return Some(t.to_match(MatchPolicy::Prefix));
            }
        }
        if self.wildcard.len == 0 {
            return None;
        }
        self.wildcard
            .best(ROOT, Some(uri))
            .map(|t| t.to_match(MatchPolicy::Wildcard))
    }
}

/// The root node of both tries; it is allocated first and never freed.
const ROOT: u32 = 0;

/// A pattern at the end of a trie path, with the full pattern kept for reporting.
#[derive(Clone, Debug)]
struct Terminal<V> {
    pattern: Box<str>,
    value: V,
}

impl<V> Terminal<V> {
    fn to_match(&self, policy: MatchPolicy) -> Match<'_, V> {
        Match {
            policy,
            pattern: &self.pattern,
            value: &self.value,
        }
    }
}

/// The first component of `rest` and what follows its dot (`None` when it is the last).
fn split_first(rest: &str) -> (&str, Option<&str>) {
    // A plain byte scan: components are short, and `str::split_once` sets up a general
    // pattern searcher that costs more than the scan itself (measured with callgrind).
    match rest.bytes().position(|b| b == b'.') {
        // `i` is the index of an ASCII byte, so both slices start and end on char boundaries.
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest, None),
    }
}

/// Trie nodes in a vector, indexed by `u32`, with freed slots reused.
#[derive(Clone, Debug)]
struct Arena<N> {
    slots: Vec<N>,
    free: Vec<u32>,
}

impl<N: Default> Arena<N> {
    fn new() -> Self {
        // The root exists from the start so that `ROOT` is always a valid index.
        Self {
            slots: vec![N::default()],
            free: Vec::new(),
        }
    }

    fn alloc(&mut self) -> u32 {
        if let Some(id) = self.free.pop() {
            return id;
        }
        // More than 2^32 trie nodes would need far more memory than any node has, since
        // each one is created by a pattern component held in memory too.
        let id = u32::try_from(self.slots.len()).expect("trie node count fits in u32");
        self.slots.push(N::default());
        id
    }

    fn release(&mut self, id: u32) {
        debug_assert_ne!(id, ROOT, "the root is never freed");
        // Dropping the old node returns its maps' memory at once.
        self.slots[id as usize] = N::default();
        self.free.push(id);
    }
}

impl<N> std::ops::Index<u32> for Arena<N> {
    type Output = N;

    fn index(&self, id: u32) -> &N {
        &self.slots[id as usize]
    }
}

impl<N> std::ops::IndexMut<u32> for Arena<N> {
    fn index_mut(&mut self, id: u32) -> &mut N {
        &mut self.slots[id as usize]
    }
}

/// The labelled edges of one trie, in one table for the whole trie rather than one map per
/// node: most nodes have one child, and a map per node would cost an allocation each (about
/// 120 bytes for one entry). Also the table of prefix tails, keyed the same way.
#[derive(Clone)]
struct Keyed<T> {
    table: HashTable<T>,
}

impl<T: fmt::Debug> fmt::Debug for Keyed<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.table.iter()).finish()
    }
}

/// What a [`Keyed`] table needs of its entries: the `(node, label)` key they are found by.
trait Key {
    fn node(&self) -> u32;
    fn label(&self) -> &str;
}

/// The hash of a `(node, label)` key, with the deterministic hasher of `core`.
fn key_hash(node: u32, label: &str) -> u64 {
    State::default().hash_one((node, label))
}

impl<T: Key> Keyed<T> {
    fn new() -> Self {
        Self {
            table: HashTable::new(),
        }
    }

    fn get(&self, node: u32, label: &str) -> Option<&T> {
        self.table.find(key_hash(node, label), |e| {
            e.node() == node && e.label() == label
        })
    }

    fn get_mut(&mut self, node: u32, label: &str) -> Option<&mut T> {
        self.table.find_mut(key_hash(node, label), |e| {
            e.node() == node && e.label() == label
        })
    }

    /// Adds an entry whose key the caller has just looked up and not found.
    fn insert_new(&mut self, entry: T) {
        let hash = key_hash(entry.node(), entry.label());
        debug_assert!(self.get(entry.node(), entry.label()).is_none());
        self.table
            .insert_unique(hash, entry, |e| key_hash(e.node(), e.label()));
    }

    fn remove(&mut self, node: u32, label: &str) -> Option<T> {
        let hash = key_hash(node, label);
        let entry = self
            .table
            .find_entry(hash, |e| e.node() == node && e.label() == label)
            .ok()?;
        Some(entry.remove().0)
    }
}

/// A trie edge: `parent --label--> child`.
#[derive(Clone, Debug)]
struct Edge {
    parent: u32,
    child: u32,
    label: Box<str>,
}

impl Key for Edge {
    fn node(&self) -> u32 {
        self.parent
    }

    fn label(&self) -> &str {
        &self.label
    }
}

/// A prefix pattern, found by the node its head leads to and its tail (the part after its
/// last dot, or all of it), which is read off the pattern rather than stored twice.
#[derive(Clone, Debug)]
struct Tail<V> {
    node: u32,
    terminal: Terminal<V>,
}

impl<V> Key for Tail<V> {
    fn node(&self) -> u32 {
        self.node
    }

    fn label(&self) -> &str {
        split_tail(&self.terminal.pattern).1
    }
}

/// Prefix patterns: a trie over every component but the last; the last component (the
/// "tail", possibly partial or empty) keys the pattern together with the node its head
/// leads to.
#[derive(Clone, Debug)]
struct PrefixTrie<V> {
    nodes: Arena<PrefixNode>,
    edges: Keyed<Edge>,
    tails: Keyed<Tail<V>>,
    len: usize,
}

#[derive(Clone, Debug, Default)]
struct PrefixNode {
    parent: u32,
    /// How many edges leave this node, so that a leaf costs no hash lookup and pruning
    /// knows when a node is unused.
    children: u32,
    /// The distinct byte lengths of the tails kept at this node, ascending, each with how
    /// many tails have it, so a lookup tries only lengths that exist.
    tail_lens: Vec<(usize, u32)>,
}

impl PrefixNode {
    fn is_unused(&self) -> bool {
        self.children == 0 && self.tail_lens.is_empty()
    }
}

/// Splits a prefix pattern into the components before its last dot and its tail.
fn split_tail(pattern: &str) -> (Option<&str>, &str) {
    match pattern.rsplit_once('.') {
        Some((head, tail)) => (Some(head), tail),
        None => (None, pattern),
    }
}

impl<V> PrefixTrie<V> {
    fn new() -> Self {
        Self {
            nodes: Arena::new(),
            edges: Keyed::new(),
            tails: Keyed::new(),
            len: 0,
        }
    }

    fn child(&self, node: u32, component: &str) -> Option<u32> {
        if self.nodes[node].children == 0 {
            return None;
        }
        self.edges.get(node, component).map(|e| e.child)
    }

    fn insert(&mut self, pattern: &str, value: V) -> Option<V> {
        let (head, tail) = split_tail(pattern);
        let mut node = ROOT;
        for component in head.into_iter().flat_map(|h| h.split('.')) {
            node = match self.child(node, component) {
                Some(child) => child,
                None => add_child(&mut self.nodes, &mut self.edges, node, component),
            };
        }
        if let Some(t) = self.tails.get_mut(node, tail) {
            return Some(std::mem::replace(&mut t.terminal.value, value));
        }
        self.tails.insert_new(Tail {
            node,
            terminal: Terminal {
                pattern: pattern.into(),
                value,
            },
        });
        let lens = &mut self.nodes[node].tail_lens;
        match lens.binary_search_by_key(&tail.len(), |&(l, _)| l) {
            Ok(i) => lens[i].1 += 1,
            Err(i) => {
                // Most nodes hold one tail length: grow exactly rather than to 4 slots.
                lens.reserve_exact(1);
                lens.insert(i, (tail.len(), 1));
            }
        }
        self.len += 1;
        None
    }

    /// The node a pattern's head leads to, if it exists.
    fn find(&self, head: Option<&str>) -> Option<u32> {
        let mut node = ROOT;
        for component in head.into_iter().flat_map(|h| h.split('.')) {
            node = self.child(node, component)?;
        }
        Some(node)
    }

    fn get(&self, pattern: &str) -> Option<&Terminal<V>> {
        let (head, tail) = split_tail(pattern);
        let node = self.find(head)?;
        self.tails.get(node, tail).map(|t| &t.terminal)
    }

    fn get_mut(&mut self, pattern: &str) -> Option<&mut Terminal<V>> {
        let (head, tail) = split_tail(pattern);
        let node = self.find(head)?;
        self.tails.get_mut(node, tail).map(|t| &mut t.terminal)
    }

    fn remove(&mut self, pattern: &str) -> Option<V> {
        let (head, tail) = split_tail(pattern);
        let mut node = self.find(head)?;
        let removed = self.tails.remove(node, tail)?;
        let lens = &mut self.nodes[node].tail_lens;
        if let Ok(i) = lens.binary_search_by_key(&tail.len(), |&(l, _)| l) {
            lens[i].1 -= 1;
            if lens[i].1 == 0 {
                lens.remove(i);
            }
        }
        self.len -= 1;
        // Free the nodes that now lead nowhere, walking up the head's components in reverse:
        // the edge into a node at depth d is the head's component d.
        let mut labels = head.into_iter().flat_map(|h| h.rsplit('.'));
        while node != ROOT && self.nodes[node].is_unused() {
            let parent = self.nodes[node].parent;
            if let Some(label) = labels.next() {
                self.edges.remove(parent, label);
                self.nodes[parent].children -= 1;
            }
            self.nodes.release(node);
            node = parent;
        }
        Some(removed.terminal.value)
    }

    /// Every prefix pattern, in table order.
    fn iter(&self) -> impl Iterator<Item = &Terminal<V>> + '_ {
        self.tails.table.iter().map(|t| &t.terminal)
    }

    /// Reports the prefix patterns that are string prefixes of `uri`, shorter first. With
    /// `longest_per_node`, reports only the longest tail matching at each node, which is all
    /// the best match needs.
    fn walk<'a>(&'a self, uri: &str, mut f: impl FnMut(&'a Terminal<V>), longest_per_node: bool) {
        let mut node = ROOT;
        let mut rest = uri;
        loop {
            let (component, next) = split_first(rest);
            // A pattern whose head led here matches if its tail starts the next component.
            let mut report = |len: usize| {
                let hit = component.get(..len).and_then(|t| self.tails.get(node, t));
                if let Some(t) = hit {
                    f(&t.terminal);
                }
                hit.is_some()
            };
            let lens = &self.nodes[node].tail_lens;
            if longest_per_node {
                for &(len, _) in lens.iter().rev() {
                    if report(len) {
                        break;
                    }
                }
            } else {
                for &(len, _) in lens {
                    report(len);
                }
            }
            let Some(next) = next else {
                return;
            };
            let Some(child) = self.child(node, component) else {
                return;
            };
            node = child;
            rest = next;
        }
    }
}

/// What [`add_child`] needs of a node type.
trait TrieNode: Default {
    fn set_parent(&mut self, parent: u32);
    fn children_mut(&mut self) -> &mut u32;
}

impl TrieNode for PrefixNode {
    fn set_parent(&mut self, parent: u32) {
        self.parent = parent;
    }

    fn children_mut(&mut self) -> &mut u32 {
        &mut self.children
    }
}

impl<V> TrieNode for WildcardNode<V> {
    fn set_parent(&mut self, parent: u32) {
        self.parent = parent;
    }

    fn children_mut(&mut self) -> &mut u32 {
        &mut self.children
    }
}

/// Allocates a child of `parent` reached by the concrete `label` and records the edge.
fn add_child<N: TrieNode>(
    nodes: &mut Arena<N>,
    edges: &mut Keyed<Edge>,
    parent: u32,
    label: &str,
) -> u32 {
    let child = nodes.alloc();
    nodes[child].set_parent(parent);
    *nodes[parent].children_mut() += 1;
    edges.insert_new(Edge {
        parent,
        child,
        label: label.into(),
    });
    child
}

/// Wildcard patterns: a trie over all components, an empty component taking the node's
/// `any` edge.
#[derive(Clone, Debug)]
struct WildcardTrie<V> {
    nodes: Arena<WildcardNode<V>>,
    edges: Keyed<Edge>,
    len: usize,
}

#[derive(Clone, Debug)]
struct WildcardNode<V> {
    parent: u32,
    /// How many concrete edges leave this node (see [`PrefixNode::children`]).
    children: u32,
    /// The child for an empty (wildcard) component. Never the root, hence non-zero.
    any: Option<NonZeroU32>,
    /// The pattern whose last component leads here.
    end: Option<Terminal<V>>,
}

impl<V> Default for WildcardNode<V> {
    fn default() -> Self {
        Self {
            parent: ROOT,
            children: 0,
            any: None,
            end: None,
        }
    }
}

impl<V> WildcardNode<V> {
    fn is_unused(&self) -> bool {
        self.children == 0 && self.any.is_none() && self.end.is_none()
    }
}

impl<V> WildcardTrie<V> {
    fn new() -> Self {
        Self {
            nodes: Arena::new(),
            edges: Keyed::new(),
            len: 0,
        }
    }

    /// The child of `node` for a concrete, non-empty component.
    fn concrete(&self, node: u32, component: &str) -> Option<u32> {
        // A concrete pattern component never equals an empty URI component, and a leaf
        // needs no hash lookup.
        if component.is_empty() || self.nodes[node].children == 0 {
            return None;
        }
        self.edges.get(node, component).map(|e| e.child)
    }

    /// The child of `node` for a pattern component: the `any` edge for an empty one.
    fn child(&self, node: u32, component: &str) -> Option<u32> {
        if component.is_empty() {
            self.nodes[node].any.map(NonZeroU32::get)
        } else {
            self.concrete(node, component)
        }
    }

    fn insert(&mut self, pattern: &str, value: V) -> Option<V> {
        let mut node = ROOT;
        for component in pattern.split('.') {
            node = match self.child(node, component) {
                Some(child) => child,
                None if component.is_empty() => {
                    let child = self.nodes.alloc();
                    self.nodes[child].parent = node;
                    self.nodes[node].any = NonZeroU32::new(child);
                    debug_assert!(
                        self.nodes[node].any.is_some(),
                        "a fresh node is never the root"
                    );
                    child
                }
                None => add_child(&mut self.nodes, &mut self.edges, node, component),
            };
        }
        let n = &mut self.nodes[node];
        if let Some(t) = &mut n.end {
            return Some(std::mem::replace(&mut t.value, value));
        }
        n.end = Some(Terminal {
            pattern: pattern.into(),
            value,
        });
        self.len += 1;
        None
    }

    fn find(&self, pattern: &str) -> Option<u32> {
        let mut node = ROOT;
        for component in pattern.split('.') {
            node = self.child(node, component)?;
        }
        Some(node)
    }

    fn get(&self, pattern: &str) -> Option<&Terminal<V>> {
        self.nodes[self.find(pattern)?].end.as_ref()
    }

    fn get_mut(&mut self, pattern: &str) -> Option<&mut Terminal<V>> {
        let node = self.find(pattern)?;
        self.nodes[node].end.as_mut()
    }

    fn remove(&mut self, pattern: &str) -> Option<V> {
        let mut node = self.find(pattern)?;
        let removed = self.nodes[node].end.take()?;
        self.len -= 1;
        // Free the nodes that now lead nowhere; the edge into each is the pattern's
        // components read from the end.
        let mut labels = pattern.rsplit('.');
        while node != ROOT && self.nodes[node].is_unused() {
            let parent = self.nodes[node].parent;
            if let Some(label) = labels.next() {
                if label.is_empty() {
                    self.nodes[parent].any = None;
                } else {
                    self.edges.remove(parent, label);
                    self.nodes[parent].children -= 1;
                }
            }
            self.nodes.release(node);
            node = parent;
        }
        Some(removed.value)
    }

    /// Every wildcard pattern, in node order.
    fn iter(&self) -> impl Iterator<Item = &Terminal<V>> + '_ {
        self.nodes.slots.iter().filter_map(|node| node.end.as_ref())
    }

    /// Reports every wildcard pattern matching `rest` (the URI's components still to
    /// match, `None` once all are consumed) below `node`. Recursion depth is bounded by
    /// the trie's depth, at most [`MAX_PATTERN_COMPONENTS`].
    fn walk<'a>(&'a self, node: u32, rest: Option<&str>, f: &mut impl FnMut(&'a Terminal<V>)) {
        let n = &self.nodes[node];
        let Some(rest) = rest else {
            if let Some(t) = &n.end {
                f(t);
            }
            return;
        };
        let (component, next) = split_first(rest);
        if let Some(child) = self.concrete(node, component) {
            self.walk(child, next, f);
        }
        if let Some(any) = n.any {
            self.walk(any.get(), next, f);
        }
    }

    /// The best wildcard pattern matching `rest` below `node`: trying the concrete edge
    /// before the `any` edge makes the first hit the pattern whose concrete runs compare
    /// greatest, which is the spec's precedence.
    fn best(&self, node: u32, rest: Option<&str>) -> Option<&Terminal<V>> {
        let n = &self.nodes[node];
        let Some(rest) = rest else {
            return n.end.as_ref();
        };
        let (component, next) = split_first(rest);
        if let Some(child) = self.concrete(node, component) {
            if let Some(t) = self.best(child, next) {
                return Some(t);
            }
        }
        n.any.and_then(|any| self.best(any.get(), next))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    use MatchPolicy::{Exact, Prefix, Wildcard};

    type Entries = BTreeMap<(MatchPolicy, String), u32>;

    fn matcher(patterns: &[(&str, MatchPolicy)]) -> Matcher<u32> {
        let mut m = Matcher::new();
        for (i, &(pattern, policy)) in patterns.iter().enumerate() {
            let value = u32::try_from(i).unwrap() + 1;
            assert_eq!(m.insert(pattern, policy, value), Ok(None), "{pattern:?}");
        }
        m
    }

    fn all_matches(m: &Matcher<u32>, uri: &str) -> Vec<(MatchPolicy, String, u32)> {
        let mut v = Vec::new();
        m.for_each_match(uri, |hit| {
            v.push((hit.policy, hit.pattern.to_owned(), *hit.value))
        });
        v.sort();
        v
    }

    /// Checks which patterns match `uri` and which one wins, by pattern.
    fn check(m: &Matcher<u32>, uri: &str, all: &[&str], best: Option<&str>) {
        let mut got: Vec<String> = all_matches(m, uri).into_iter().map(|(_, p, _)| p).collect();
        got.sort();
        let mut want: Vec<String> = all.iter().map(|s| (*s).to_owned()).collect();
        want.sort();
        assert_eq!(got, want, "all matches of {uri:?}");
        assert_eq!(
            m.best_match(uri).map(|hit| hit.pattern),
            best,
            "best match of {uri:?}"
        );
    }

    #[test]
    fn spec_registration_precedence_examples() {
        // The spec's example, "Calls matching multiple registrations".
        let m = matcher(&[
            ("a1.b2.c3.d4.e55", Exact),
            ("a1.b2.c3", Prefix),
            ("a1.b2.c3.d4", Prefix),
            ("a1.b2..d4.e5", Wildcard),
            ("a1.b2.c3..e5", Wildcard),
            ("a1.b2..d4.e5..g7", Wildcard),
            ("a1.b2..d4..f6.g7", Wildcard),
        ]);
        let best = |uri: &str| m.best_match(uri).map(|hit| *hit.value);
        assert_eq!(best("a1.b2.c3.d4.e55"), Some(1));
        assert_eq!(best("a1.b2.c3.d98.e74"), Some(2));
        assert_eq!(best("a1.b2.c3.d4.e325"), Some(3));
        assert_eq!(best("a1.b2.c55.d4.e5"), Some(4));
        // The spec's list says "no prefix match" here and picks 5, but prefixes 2 and 3 are
        // string prefixes of this URI, so its own rule 2 picks the longer prefix, 3.
        assert_eq!(best("a1.b2.c3.d4.e5"), Some(3));
        assert_eq!(best("a1.b2.c88.d4.e5.f6.g7"), Some(6));
        assert_eq!(best("a2.b2.c2.d2.e2"), None);
    }

    #[test]
    fn spec_wildcard_precedence_without_prefixes() {
        // The same example without the prefix registrations, which would otherwise win.
        let m = matcher(&[
            ("a1.b2..d4.e5", Wildcard),
            ("a1.b2.c3..e5", Wildcard),
            ("a1.b2..d4", Wildcard),
            ("a1...d4", Wildcard),
        ]);
        check(
            &m,
            "a1.b2.c3.d4.e5",
            &["a1.b2..d4.e5", "a1.b2.c3..e5"],
            Some("a1.b2.c3..e5"),
        );
        check(
            &m,
            "a1.b2.c33.d4.e5",
            &["a1.b2..d4.e5"],
            Some("a1.b2..d4.e5"),
        );
        check(
            &m,
            "a1.b2.c3.d4",
            &["a1.b2..d4", "a1...d4"],
            Some("a1.b2..d4"),
        );
        check(&m, "a1.x.c3.d4", &["a1...d4"], Some("a1...d4"));
    }

    #[test]
    fn prefix_is_a_string_prefix() {
        // The spec's pattern-based subscription example.
        let m = matcher(&[("com.myapp.topic.emergency", Prefix)]);
        let p = "com.myapp.topic.emergency";
        check(&m, "com.myapp.topic.emergency.11", &[p], Some(p));
        check(&m, "com.myapp.topic.emergency-low", &[p], Some(p));
        check(
            &m,
            "com.myapp.topic.emergency.category.severe",
            &[p],
            Some(p),
        );
        check(&m, "com.myapp.topic.emergency", &[p], Some(p));
        check(&m, "com.myapp.topic.emerge", &[], None);
        check(&m, "com.myapp.topic", &[], None);
        // The spec's pattern-based registration example.
        let m = matcher(&[("com.myapp.myobject1", Prefix)]);
        let p = "com.myapp.myobject1";
        check(&m, "com.myapp.myobject1.myprocedure1", &[p], Some(p));
        check(&m, "com.myapp.myobject1-mysubobject1", &[p], Some(p));
        check(
            &m,
            "com.myapp.myobject1.mysubobject1.myprocedure1",
            &[p],
            Some(p),
        );
        check(&m, "com.myapp.myobject1", &[p], Some(p));
        check(&m, "com.myapp.myobject2", &[], None);
        check(&m, "com.myapp.myobject", &[], None);
    }

    #[test]
    fn prefix_trailing_dot_and_empty() {
        let m = matcher(&[("com.example.", Prefix), ("", Prefix), ("com.ex", Prefix)]);
        check(
            &m,
            "com.example.x",
            &["", "com.ex", "com.example."],
            Some("com.example."),
        );
        check(&m, "com.example", &["", "com.ex"], Some("com.ex"));
        check(&m, "com.examplex.y", &["", "com.ex"], Some("com.ex"));
        check(&m, "org", &[""], Some(""));
    }

    #[test]
    fn prefix_longest_in_one_component() {
        let m = matcher(&[("a.b", Prefix), ("a.bc", Prefix), ("a.bcd.", Prefix)]);
        check(&m, "a.bcd", &["a.b", "a.bc"], Some("a.bc"));
        check(&m, "a.bcd.e", &["a.b", "a.bc", "a.bcd."], Some("a.bcd."));
        check(&m, "a.b", &["a.b"], Some("a.b"));
    }

    #[test]
    fn spec_wildcard_subscription_example() {
        let m = matcher(&[("com.myapp..userevent", Wildcard)]);
        let p = "com.myapp..userevent";
        check(&m, "com.myapp.foo.userevent", &[p], Some(p));
        check(&m, "com.myapp.bar.userevent", &[p], Some(p));
        check(&m, "com.myapp.a12.userevent", &[p], Some(p));
        check(&m, "com.myapp.foo.userevent.bar", &[], None);
        check(&m, "com.myapp.foo.user", &[], None);
        check(&m, "com.myapp2.foo.userevent", &[], None);
    }

    #[test]
    fn wildcard_edges() {
        let m = matcher(&[
            ("", Wildcard),
            (".", Wildcard),
            ("a.", Wildcard),
            ("a.b", Wildcard),
        ]);
        check(&m, "x", &[""], Some(""));
        check(&m, "x.y", &["."], Some("."));
        check(&m, "a.b", &[".", "a.", "a.b"], Some("a.b"));
        check(&m, "a.c", &[".", "a."], Some("a."));
        check(&m, "a.b.c", &[], None);
    }

    #[test]
    fn exact_beats_everything_and_all_policies_report() {
        let m = matcher(&[
            ("a.b", Exact),
            ("a", Prefix),
            ("a.", Wildcard),
            ("a.b", Prefix),
        ]);
        check(&m, "a.b", &["a.b", "a", "a.", "a.b"], Some("a.b"));
        assert_eq!(m.best_match("a.b").map(|hit| hit.policy), Some(Exact));
        assert_eq!(m.best_match("a.bb").map(|hit| hit.pattern), Some("a.b"));
        assert_eq!(m.best_match("a.c").map(|hit| hit.policy), Some(Prefix));
    }

    #[test]
    fn insert_replace_get_remove() {
        let mut m = Matcher::new();
        for policy in [Exact, Prefix, Wildcard] {
            assert_eq!(m.insert("a.b", policy, 1), Ok(None));
            assert_eq!(m.insert("a.b", policy, 2), Ok(Some(1)));
        }
        assert_eq!(m.len(), 3);
        for policy in [Exact, Prefix, Wildcard] {
            assert_eq!(m.get("a.b", policy), Some(&2));
            *m.get_mut("a.b", policy).unwrap() += 1;
            assert_eq!(m.get("a.b", policy), Some(&3));
            assert_eq!(m.get("a", policy), None);
            assert_eq!(m.get("a.b.c", policy), None);
            assert_eq!(m.remove("a.bc", policy), None);
        }
        for policy in [Exact, Prefix, Wildcard] {
            assert_eq!(m.remove("a.b", policy), Some(3));
            assert_eq!(m.remove("a.b", policy), None);
        }
        assert!(m.is_empty());
        assert_eq!(m.iter().count(), 0);
    }

    #[test]
    fn removal_frees_nodes_for_reuse() {
        let mut m = Matcher::new();
        for round in 0..3 {
            for i in 0..50 {
                let p = format!("x.y{i}.z.w");
                m.insert(&p, Prefix, round).unwrap();
                m.insert(&p.replace(".z", ".."), Wildcard, round).unwrap();
            }
            for i in 0..50 {
                let p = format!("x.y{i}.z.w");
                assert_eq!(m.remove(&p, Prefix), Some(round));
                assert_eq!(m.remove(&p.replace(".z", ".."), Wildcard), Some(round));
            }
            assert!(m.is_empty());
            // Only the roots stay in use; every other slot is on the free list.
            assert_eq!(m.prefix.nodes.slots.len() - m.prefix.nodes.free.len(), 1);
            assert_eq!(
                m.wildcard.nodes.slots.len() - m.wildcard.nodes.free.len(),
                1
            );
            assert!(m.prefix.nodes[ROOT].is_unused());
            assert!(m.wildcard.nodes[ROOT].is_unused());
        }
        // Slots were reused rather than grown each round.
        assert!(m.prefix.nodes.slots.len() <= 1 + 50 * 2 + 1);
    }

    #[test]
    fn component_limit() {
        let mut m = Matcher::new();
        let deep = vec!["a"; MAX_PATTERN_COMPONENTS + 1].join(".");
        let ok = vec!["a"; MAX_PATTERN_COMPONENTS].join(".");
        let err = Err(MatcherError::TooManyComponents {
            components: MAX_PATTERN_COMPONENTS + 1,
        });
        assert_eq!(m.insert(&deep, Prefix, 1), err);
        assert_eq!(m.insert(&deep, Wildcard, 1), err);
        assert_eq!(m.insert(&deep, Exact, 1), Ok(None));
        assert_eq!(m.insert(&ok, Wildcard, 2), Ok(None));
        assert_eq!(m.insert(&ok, Prefix, 3), Ok(None));
        // A URI far deeper than any pattern costs no deeper recursion than the trie.
        let huge = vec!["a"; 100_000].join(".");
        assert_eq!(all_matches(&m, &huge).len(), 1);
        assert_eq!(m.best_match(&huge).map(|hit| *hit.value), Some(3));
    }

    #[test]
    fn iter_reports_every_entry() {
        let patterns = [
            ("a", Exact),
            ("a", Prefix),
            ("a.", Prefix),
            ("", Wildcard),
            ("a..b", Wildcard),
        ];
        let m = matcher(&patterns);
        let mut got: Vec<_> = m
            .iter()
            .map(|hit| (hit.policy, hit.pattern, *hit.value))
            .collect();
        got.sort();
        let mut want: Vec<_> = patterns
            .iter()
            .zip(1..)
            .map(|(&(p, pol), v)| (pol, p, v))
            .collect();
        want.sort();
        assert_eq!(got, want);
    }

    // Reference semantics, written straight from the spec's text by scanning every entry.

    fn reference_matches(policy: MatchPolicy, pattern: &str, uri: &str) -> bool {
        match policy {
            Exact => pattern == uri,
            Prefix => uri.starts_with(pattern),
            Wildcard => {
                let p: Vec<&str> = pattern.split('.').collect();
                let u: Vec<&str> = uri.split('.').collect();
                p.len() == u.len() && p.iter().zip(&u).all(|(p, u)| p.is_empty() || p == u)
            }
        }
    }

    /// "The longest portion of URI components matched before each wildcard": the lengths of
    /// the runs of concrete components, compared in order.
    fn wildcard_portions(pattern: &str) -> Vec<usize> {
        pattern
            .split('.')
            .collect::<Vec<_>>()
            .split(|c| c.is_empty())
            .map(<[&str]>::len)
            .collect()
    }

    fn reference_all(entries: &Entries, uri: &str) -> Vec<(MatchPolicy, String, u32)> {
        let mut v: Vec<_> = entries
            .iter()
            .filter(|((policy, pattern), _)| reference_matches(*policy, pattern, uri))
            .map(|((policy, pattern), value)| (*policy, pattern.clone(), *value))
            .collect();
        v.sort();
        v
    }

    fn reference_best(entries: &Entries, uri: &str) -> Option<(MatchPolicy, String)> {
        let all = reference_all(entries, uri);
        let of = |policy| all.iter().filter(move |(p, _, _)| *p == policy);
        if let Some((_, pattern, _)) = of(Exact).next() {
            return Some((Exact, pattern.clone()));
        }
        let longest = of(Prefix).map(|(_, pattern, _)| pattern.len()).max();
        if let Some(len) = longest {
            let best: Vec<_> = of(Prefix).filter(|(_, p, _)| p.len() == len).collect();
            assert_eq!(best.len(), 1, "two prefix patterns tie for {uri:?}");
            return Some((Prefix, best[0].1.clone()));
        }
        let key = of(Wildcard).map(|(_, p, _)| wildcard_portions(p)).max()?;
        let best: Vec<_> = of(Wildcard)
            .filter(|(_, p, _)| wildcard_portions(p) == key)
            .collect();
        assert_eq!(best.len(), 1, "two wildcard patterns tie for {uri:?}");
        Some((Wildcard, best[0].1.clone()))
    }

    fn component() -> impl Strategy<Value = &'static str> {
        // Few distinct components, some prefixes of others, so that patterns collide and
        // prefix patterns end inside components.
        prop::sample::select(vec!["a", "b", "ab", "abc", "ä", "äb"])
    }

    fn uri() -> impl Strategy<Value = String> {
        prop::collection::vec(component(), 1..5).prop_map(|v| v.join("."))
    }

    fn pattern() -> impl Strategy<Value = (MatchPolicy, String)> {
        let comp_or_wild = prop_oneof![3 => component(), 1 => Just("")];
        prop_oneof![
            uri().prop_map(|u| (Exact, u)),
            // A URI cut anywhere at a char boundary, so the empty pattern, trailing dots and
            // partial components all come up.
            (uri(), any::<prop::sample::Index>()).prop_map(|(u, i)| {
                let cuts: Vec<usize> = (0..=u.len()).filter(|&c| u.is_char_boundary(c)).collect();
                (Prefix, u[..cuts[i.index(cuts.len())]].to_owned())
            }),
            prop::collection::vec(comp_or_wild, 1..5).prop_map(|v| (Wildcard, v.join("."))),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn agrees_with_reference(
            patterns in prop::collection::vec(pattern(), 0..40),
            removals in prop::collection::vec(any::<prop::sample::Index>(), 0..30),
            uris in prop::collection::vec(uri(), 1..20),
        ) {
            let mut m = Matcher::new();
            let mut entries = Entries::new();
            for (value, (policy, pattern)) in (1..).zip(&patterns) {
                let old = m.insert(pattern, *policy, value).unwrap();
                prop_assert_eq!(old, entries.insert((*policy, pattern.clone()), value));
            }
            let compare = |m: &Matcher<u32>, entries: &Entries| -> Result<(), TestCaseError> {
                prop_assert_eq!(m.len(), entries.len());
                let mut listed: Vec<_> = m.iter().map(|h| (h.policy, h.pattern.to_owned(), *h.value)).collect();
                listed.sort();
                let want: Vec<_> = entries.iter().map(|((po, pa), v)| (*po, pa.clone(), *v)).collect();
                prop_assert_eq!(listed, want);
                for ((policy, pattern), value) in entries {
                    prop_assert_eq!(m.get(pattern, *policy), Some(value));
                }
                for uri in &uris {
                    prop_assert_eq!(all_matches(m, uri), reference_all(entries, uri), "all of {}", uri);
                    let best = m.best_match(uri).map(|h| (h.policy, h.pattern.to_owned()));
                    prop_assert_eq!(best, reference_best(entries, uri), "best of {}", uri);
                }
                Ok(())
            };
            compare(&m, &entries)?;
            for index in removals {
                if entries.is_empty() {
                    break;
                }
                let key = entries.keys().nth(index.index(entries.len())).unwrap().clone();
                let value = entries.remove(&key);
                prop_assert_eq!(m.remove(&key.1, key.0), value);
                prop_assert_eq!(m.get(&key.1, key.0), None);
            }
            compare(&m, &entries)?;
        }
    }
}
