"""Personal data that shows in free text: the patterns logs, masks and pseudonyms look for.

Free text (error messages, file names, alert details) is not classified, so two kinds of personal
data are found by shape wherever they appear: email addresses, and phone numbers in E.164 form
(``+`` and 7 to 15 digits, spaces or dashes allowed between groups).  Numbers without ``+`` are
left alone: too many ids, counts and amounts look the same.
"""

from __future__ import annotations

import re

EMAIL_IN_TEXT = re.compile(
    r"[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"
)
PHONE_IN_TEXT = re.compile(r"(?<![\w+])\+\d(?:[\s-]?\d){6,14}(?!\d)")
