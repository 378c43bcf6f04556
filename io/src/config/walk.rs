//! The JSON walker under the configuration parser: typed reads that record problems by path.
//!
//! Every object is read through an [`Obj`], which remembers the keys the parser asked for;
//! when the parser is done with an object, [`Obj::finish`] reports every key nobody asked
//! for. That is how `check` can promise that no key of a user's configuration is silently
//! dropped. This module knows nothing about Crossbar's schema: `parse` does.

use serde_json::{Map, Value};

use super::{Problem, ProblemKind};

/// Collects the problems of one configuration walk.
#[derive(Default)]
pub(super) struct Walk {
    pub(super) problems: Vec<Problem>,
}

/// One JSON value and where it sits in the document.
#[derive(Clone)]
pub(super) struct Field<'a> {
    pub(super) value: &'a Value,
    path: Path,
}

/// A JSON path such as `workers[0].transports[1].endpoint`, built as the walk descends.
pub(super) type Path = String;

/// An object being read: the keys asked for are remembered so the rest can be reported.
pub(super) struct Obj<'a> {
    map: &'a Map<String, Value>,
    path: Path,
    seen: Vec<&'a str>,
}

/// What to say about a key the parser did not read.
pub(super) enum Leftover {
    /// A key whose effect Switchyard does not provide: refuse the configuration.
    Unsupported(&'static str),
    /// A key that changes nothing observable here: accept it and say so.
    Ignored(&'static str),
}

impl Walk {
    /// Records one problem.
    pub(super) fn report(&mut self, path: &str, kind: ProblemKind) {
        self.problems.push(Problem {
            path: display_path(path),
            kind,
        });
    }

    /// Whether any problem so far refuses the configuration.
    pub(super) fn has_errors(&self) -> bool {
        self.problems.iter().any(Problem::is_error)
    }

    /// Reads `field` as an object, reporting a type error otherwise.
    pub(super) fn obj<'a>(&mut self, field: Field<'a>) -> Option<Obj<'a>> {
        match field.value {
            Value::Object(map) => Some(Obj {
                map,
                path: field.path,
                seen: Vec::new(),
            }),
            _ => {
                self.wrong_type(field, "an object");
                None
            }
        }
    }

    /// Reads `field` as a string.
    pub(super) fn str<'a>(&mut self, field: Field<'a>) -> Option<&'a str> {
        match field.value {
            Value::String(s) => Some(s),
            _ => {
                self.wrong_type(field, "a string");
                None
            }
        }
    }

    /// Reads `field` as a boolean.
    pub(super) fn bool(&mut self, field: Field<'_>) -> Option<bool> {
        match field.value {
            Value::Bool(b) => Some(*b),
            _ => {
                self.wrong_type(field, "true or false");
                None
            }
        }
    }

    /// Reads `field` as an integer in `min..=max`.
    pub(super) fn int(&mut self, field: Field<'_>, min: u64, max: u64) -> Option<u64> {
        match field.value.as_u64() {
            Some(n) if (min..=max).contains(&n) => Some(n),
            Some(_) => {
                self.report(
                    &field.path,
                    ProblemKind::OutOfRange {
                        value: field.value.to_string(),
                        min,
                        max,
                    },
                );
                None
            }
            None if field.value.is_number() => {
                self.report(
                    &field.path,
                    ProblemKind::OutOfRange {
                        value: field.value.to_string(),
                        min,
                        max,
                    },
                );
                None
            }
            None => {
                self.wrong_type(field, "an integer");
                None
            }
        }
    }

    /// Reads `field` as an array and hands out its elements with their paths.
    pub(super) fn list<'a>(&mut self, field: Field<'a>) -> Option<Vec<(Path, &'a Value)>> {
        match field.value {
            Value::Array(items) => Some(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| (format!("{}[{i}]", field.path), v))
                    .collect(),
            ),
            _ => {
                self.wrong_type(field, "an array");
                None
            }
        }
    }

    /// Reads `field` as an array of strings.
    pub(super) fn strings<'a>(&mut self, field: Field<'a>) -> Option<Vec<(Path, &'a str)>> {
        let items = self.list(field)?;
        let mut out = Vec::with_capacity(items.len());
        for (path, value) in &items {
            match value {
                Value::String(s) => out.push((path.clone(), s.as_str())),
                _ => self.report(
                    path,
                    ProblemKind::WrongType {
                        expected: "a string",
                    },
                ),
            }
        }
        (out.len() == items.len()).then_some(out)
    }

    /// Reports a value of the wrong JSON type.
    pub(super) fn wrong_type(&mut self, field: Field<'_>, expected: &'static str) {
        self.report(&field.path, ProblemKind::WrongType { expected });
    }

    /// Reports an invalid value with the reason.
    pub(super) fn invalid(&mut self, path: &str, reason: impl Into<String>) {
        self.report(path, ProblemKind::Invalid(reason.into()));
    }

    /// Reports a key Switchyard does not implement.
    pub(super) fn unsupported(&mut self, path: &str, reason: impl Into<String>) {
        self.report(path, ProblemKind::Unsupported(reason.into()));
    }

    /// Reports a key accepted without effect.
    pub(super) fn ignored(&mut self, path: &str, reason: impl Into<String>) {
        self.report(path, ProblemKind::Ignored(reason.into()));
    }
}

impl<'a> Field<'a> {
    /// A field at `path`.
    pub(super) fn new(value: &'a Value, path: &str) -> Self {
        Self {
            value,
            path: path.to_owned(),
        }
    }

    /// Where the field sits.
    pub(super) fn path(&self) -> &str {
        &self.path
    }
}

impl<'a> Obj<'a> {
    /// The object's own path.
    pub(super) fn path(&self) -> &str {
        &self.path
    }

    /// The path of `key` inside this object.
    pub(super) fn key_path(&self, key: &str) -> Path {
        join(&self.path, key)
    }

    /// Takes `key` (marking it read); `None` when absent.
    pub(super) fn take(&mut self, key: &'a str) -> Option<(Path, &'a Value)> {
        let (k, v) = self.map.get_key_value(key)?;
        self.seen.push(k.as_str());
        Some((join(&self.path, k), v))
    }

    /// Takes a mandatory `key`, reporting it missing when absent.
    pub(super) fn need(&mut self, walk: &mut Walk, key: &'a str) -> Option<(Path, &'a Value)> {
        let found = self.take(key);
        if found.is_none() {
            walk.report(&self.key_path(key), ProblemKind::Missing);
        }
        found
    }

    /// Every key of the object, marking them all read: for maps keyed by user names
    /// (web paths, universal WebSocket paths).
    pub(super) fn entries(&mut self) -> Vec<(&'a str, Path, &'a Value)> {
        let map: &'a Map<String, Value> = self.map;
        self.seen.extend(map.keys().map(String::as_str));
        map.iter()
            .map(|(k, v)| (k.as_str(), join(&self.path, k), v))
            .collect()
    }

    /// Reports every key that was not read, with what `judge` says about it.
    pub(super) fn finish(self, walk: &mut Walk, judge: impl Fn(&str) -> Leftover) {
        for key in self.map.keys() {
            if self.seen.contains(&key.as_str()) {
                continue;
            }
            let path = join(&self.path, key);
            match judge(key) {
                Leftover::Unsupported(reason) => walk.unsupported(&path, reason),
                Leftover::Ignored(reason) => walk.ignored(&path, reason),
            }
        }
    }
}

/// Judges every leftover key unsupported (the usual case).
pub(super) fn none_known(_: &str) -> Leftover {
    Leftover::Unsupported(NOT_SUPPORTED)
}

/// The reason given for a key Switchyard does not implement and has no better word for.
pub(super) const NOT_SUPPORTED: &str = "not supported by Switchyard";

/// `parent.key`, or `parent["key"]` when the key is not a plain name, so that a path can be
/// read back unambiguously (web paths such as `/` are keys too).
fn join(parent: &str, key: &str) -> Path {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '$'));
    match (parent.is_empty(), plain) {
        (true, true) => key.to_owned(),
        (false, true) => format!("{parent}.{key}"),
        (_, false) => format!("{parent}[{key:?}]"),
    }
}

/// The document root has the empty path internally; `$` reads better in a message.
fn display_path(path: &str) -> String {
    if path.is_empty() {
        "$".to_owned()
    } else {
        path.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_join_plain_and_quoted_keys() {
        let check = |parent: &str, key: &str, expect: &str| assert_eq!(join(parent, key), expect);
        check("", "version", "version");
        check("workers[0]", "transports", "workers[0].transports");
        check("a.paths", "/", "a.paths[\"/\"]");
        check("a.paths", "ws", "a.paths.ws");
        check("", "$schema", "$schema");
    }
}
