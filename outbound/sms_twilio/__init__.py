"""Twilio SMS channel: templated texts through the twilio SDK, E.164 numbers, GSM-7/UCS-2
segment counts, quiet hours per recipient time zone.

Status callbacks and inbound STOP/START replies are received by
``junction.api.routes.callbacks_twilio``.
"""

from outbound.sms_twilio.channel import TwilioSmsChannel
from outbound.sms_twilio.config import TwilioSmsConfig

__all__ = ["TwilioSmsChannel", "TwilioSmsConfig"]
