//! One I2C transaction against the firmware: its operations split into bus phases (adjacent
//! operations of one kind are one phase, no repeated START between them), each run through
//! the firmware's receive or request handler.

use embedded_hal::i2c::Operation;

use crate::device::{self, Device};
use crate::fault::{SimError, shift_right_one_bit};

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
