//! An instance's item values, shared: made once when a fan-out expands and handed to its
//! plan and report entries by reference count, not copied (copying them for 100,000 plan
//! entries was 9% of a plan).

use std::fmt;
use std::sync::Arc;

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;

/// Matrix values by axis, then item fields by name, in that order; written as a JSON object.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ItemValues(Arc<[(String, String)]>);

impl ItemValues {
    /// The value of an axis or field (an axis and a field never share a name).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

impl FromIterator<(String, String)> for ItemValues {
    fn from_iter<I: IntoIterator<Item = (String, String)>>(iter: I) -> Self {
        Self(iter.into_iter().collect())
    }
}

impl serde::Serialize for ItemValues {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0.iter() {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl<'de> serde::Deserialize<'de> for ItemValues {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Values;
        impl<'de> Visitor<'de> for Values {
            type Value = ItemValues;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of item values")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ItemValues, A::Error> {
                // A length prefix is data: at most what a sane item holds is reserved.
                let mut pairs = Vec::with_capacity(map.size_hint().unwrap_or(0).min(64));
                while let Some(pair) = map.next_entry::<String, String>()? {
                    pairs.push(pair);
                }
                Ok(ItemValues(pairs.into()))
            }
        }
        d.deserialize_map(Values)
    }
}

impl schemars::JsonSchema for ItemValues {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        <std::collections::BTreeMap<String, String> as schemars::JsonSchema>::schema_name()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        <std::collections::BTreeMap<String, String> as schemars::JsonSchema>::json_schema(generator)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_as_an_object_in_order_and_read_back() {
        let item: ItemValues = [("year", "2024"), ("a", "x y")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let json = serde_json::to_string(&item).unwrap();
        assert_eq!(json, r#"{"year":"2024","a":"x y"}"#);
        assert_eq!(serde_json::from_str::<ItemValues>(&json).unwrap(), item);
        let bytes = postcard::to_allocvec(&item).unwrap();
        assert_eq!(postcard::from_bytes::<ItemValues>(&bytes).unwrap(), item);
        let copy = item.clone();
        assert!(
            std::ptr::eq(copy.0.as_ptr(), item.0.as_ptr()),
            "shared, not copied"
        );
    }
}
