//! JSON integers as JSON Schema counts them: `4087` and `4087.0` are the same integer, so the
//! body accepts what /openapi.json promises. Fractions and out-of-range values are refused with
//! the range in the message.

use serde::Deserialize;
use serde::de::{Deserializer, Error};

/// An integer field of type `T`, from an integral JSON number.
pub fn deserialize<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<u64> + num_bounds::Bounded,
{
    let number = serde_json::Number::deserialize(deserializer)?;
    let value = number.as_u64().or_else(|| {
        number
            .as_f64()
            .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f <= u64::MAX as f64)
            .map(|f| f as u64)
    });
    value
        .and_then(|value| T::try_from(value).ok())
        .ok_or_else(|| {
            D::Error::custom(format!(
                "invalid value: {number}, expected an integer from 0 to {}",
                T::MAX
            ))
        })
}

/// [`deserialize`] for an optional field (`null` or absent is `None`).
pub fn deserialize_option<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<u64> + num_bounds::Bounded,
{
    #[derive(Deserialize)]
    struct Wrapper<T: TryFrom<u64> + num_bounds::Bounded>(
        #[serde(deserialize_with = "deserialize")] T,
    );
    Ok(Option::<Wrapper<T>>::deserialize(deserializer)?.map(|Wrapper(value)| value))
}

mod num_bounds {
    /// The largest value, for the error message.
    pub trait Bounded {
        const MAX: u64;
    }
    impl Bounded for u8 {
        const MAX: u64 = u8::MAX as u64;
    }
    impl Bounded for u16 {
        const MAX: u64 = u16::MAX as u64;
    }
}
