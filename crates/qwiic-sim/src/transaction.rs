//! One I2C transaction against the firmware: its operations split into bus phases (adjacent
//! operations of one kind are one phase, no repeated START between them), each run through
//! the firmware's receive or request handler.

use embedded_hal::i2c::Operation;

use crate::device::{self, Device};
use crate::fault::SimError;

/// Splits the operations into bus phases and runs each through the firmware's handlers.
pub(crate) fn apply(
    device: &mut Device,
    now: u64,
    operations: &mut [Operation<'_>],
) -> Result<(), SimError> {
    let mut index = 0;
    while index < operations.len() {
        match &operations[index] {
            Operation::Write(_) => {
                let mut bytes = Vec::new();
                while let Some(Operation::Write(chunk)) = operations.get(index) {
                    bytes.extend_from_slice(chunk);
                    index += 1;
                }
                if bytes.len() > device::RX_LIMIT {
                    // The 16th byte is not acknowledged: the master stops, the first 15 land.
                    device.receive(now, &mut bytes[..device::RX_LIMIT]);
                    return Err(SimError::DataNotAcknowledged {
                        length: bytes.len(),
                    });
                }
                device.receive(now, &mut bytes);
            }
            Operation::Read(_) => {
                let mut phase = Vec::new();
                let mut end = index;
                while let Some(Operation::Read(chunk)) = operations.get(end) {
                    phase.resize(phase.len() + chunk.len(), 0);
                    end += 1;
                }
                device.read(now, &mut phase);
                if let Some(from) = device.corrupts_this_read(phase.len()) {
                    shift_right_one_bit(&mut phase, from);
                }
                let mut from = 0;
                for operation in &mut operations[index..end] {
                    if let Operation::Read(chunk) = operation {
                        chunk.copy_from_slice(&phase[from..from + chunk.len()]);
                        from += chunk.len();
                    }
                }
                index = end;
            }
        }
    }
    Ok(())
}

/// The phase from byte `from` on, transferred one bit late (a clock stretch the master missed
/// there): each byte takes the low bit of the one before it as its high bit, the first of them
/// the low bit of the byte before it (0 at the start: 0x5D, 0x03 read 0x2E, 0x81). From a
/// later byte, the ID before it reads right.
pub(crate) fn shift_right_one_bit(bytes: &mut [u8], from: usize) {
    let Some(before) = from.checked_sub(1) else {
        return shift(bytes, 0);
    };
    let carry = bytes.get(before).map_or(0, |byte| byte << 7);
    if let Some(tail) = bytes.get_mut(from..) {
        shift(tail, carry);
    }
}

fn shift(bytes: &mut [u8], mut carry: u8) {
    for byte in bytes {
        let next = *byte << 7;
        *byte = (*byte >> 1) | carry;
        carry = next;
    }
}
