//! The header fields of a [`super::Response`]: a list whose first field is kept inline, so
//! the usual response (one `content-type`) is built and dropped without an allocation.

use std::borrow::Cow;

use bytes::Bytes;

/// One header field: its name and value.
pub type Field = (Cow<'static, str>, Bytes);

/// Header fields in the order they were added. The first lives inline; only a second one
/// allocates. The rest are boxed, list and all: a `Response` is then small enough (at most
/// 128 bytes) to be moved with a few register moves rather than a call to `memcpy`, and it
/// is moved several times between a handler and the write buffer.
#[derive(Default, Clone)]
pub struct Fields {
    first: Option<Field>,
    // Boxed on purpose (8 bytes instead of 24): see above.
    #[allow(clippy::box_collection)]
    rest: Option<Box<Vec<Field>>>,
}

impl Fields {
    /// Add a field after the others. Checking it is the caller's job.
    #[inline(always)]
    pub(crate) fn push(&mut self, field: Field) {
        if self.first.is_none() {
            self.first = Some(field);
        } else {
            self.rest.get_or_insert_with(Default::default).push(field);
        }
    }

    /// The fields in order, names as given.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> + '_ {
        self.first.iter().chain(self.rest()).map(|(n, v)| (n.as_ref(), &v[..]))
    }

    /// Whether any field (name as given, value) satisfies `f`: `iter().any(f)`, without the
    /// chained iterator (asked of every response, which has one or two fields).
    #[inline]
    pub(crate) fn any(&self, mut f: impl FnMut(&str, &[u8]) -> bool) -> bool {
        self.first.as_ref().is_some_and(|(n, v)| f(n, v)) || self.rest().iter().any(|(n, v)| f(n, v))
    }

    pub fn len(&self) -> usize {
        self.first.is_some() as usize + self.rest().len()
    }

    fn rest(&self) -> &[Field] {
        self.rest.as_deref().map_or(&[], Vec::as_slice)
    }

    pub fn is_empty(&self) -> bool {
        self.first.is_none()
    }
}

impl std::fmt::Debug for Fields {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.first.iter().chain(self.rest())).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_order_across_the_inline_field_and_the_rest() {
        let mut fields = Fields::default();
        assert!(fields.is_empty());
        for (n, v) in [("a", "1"), ("b", "2"), ("c", "3")] {
            fields.push((Cow::Borrowed(n), Bytes::from_static(v.as_bytes())));
        }
        let got: Vec<(&str, &[u8])> = fields.iter().collect();
        assert_eq!(got, vec![("a", &b"1"[..]), ("b", &b"2"[..]), ("c", &b"3"[..])]);
        assert_eq!(fields.len(), 3);
    }
}
