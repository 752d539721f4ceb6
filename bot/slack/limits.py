"""Slack's limits on what a message or modal may hold, in one place: a post over any of them
fails whole (`invalid_blocks`, `msg_blocks_too_long`), so every builder fits within them.

From the Block Kit reference (docs.slack.dev/reference/block-kit: blocks, block elements,
composition objects, views) unless noted. Lengths are characters; opsbot counts UTF-16 code
units (`bot.slack.mrkdwn.units`), which is never less.
"""

from __future__ import annotations

__all__ = [
    "ACTION_ID",
    "BLOCKS_PER_MESSAGE",
    "BLOCKS_PER_MODAL",
    "BLOCK_ID",
    "BUTTONS_PER_ACTIONS",
    "BUTTON_TEXT",
    "BUTTON_VALUE",
    "CONFIRM_BUTTON",
    "CONFIRM_TEXT",
    "CONFIRM_TITLE",
    "CONTEXT_ELEMENTS",
    "FIELDS_PER_SECTION",
    "FIELD_TEXT",
    "HEADER_TEXT",
    "INPUT_LABEL",
    "MESSAGE_TEXT",
    "MESSAGE_TEXT_BUDGET",
    "MODAL_BUTTON",
    "MODAL_TITLE",
    "OPTION_TEXT",
    "PLACEHOLDER",
    "PRIVATE_METADATA",
    "SECTION_TEXT",
    "TEXT_INPUT_MAX",
    "TEXT_OBJECT",
]

# Messages
BLOCKS_PER_MESSAGE = 50
MESSAGE_TEXT = 40_000  # the top-level `text`; Slack truncates longer ones
# All text objects of one message together. Not in the block reference: chat.postMessage
# answers `msg_blocks_too_long` past roughly this many (slackapi/bolt-js#2509, #2867; the
# markdown block documents the same 12,000 as its cumulative limit).
MESSAGE_TEXT_BUDGET = 12_000

# Blocks
BLOCK_ID = 255
SECTION_TEXT = 3000
FIELDS_PER_SECTION = 10
FIELD_TEXT = 2000
CONTEXT_ELEMENTS = 10
HEADER_TEXT = 150
BUTTONS_PER_ACTIONS = 25
INPUT_LABEL = 2000

# Elements and composition objects
TEXT_OBJECT = 3000  # any text object, a context element's included
BUTTON_TEXT = 75
BUTTON_VALUE = 2000
ACTION_ID = 255
CONFIRM_TITLE = 100
CONFIRM_TEXT = 300
CONFIRM_BUTTON = 30
OPTION_TEXT = 75
PLACEHOLDER = 150
TEXT_INPUT_MAX = 3000  # a plain_text_input's max_length

# Modals (views.open)
BLOCKS_PER_MODAL = 100
MODAL_TITLE = 24
MODAL_BUTTON = 24  # submit and close
PRIVATE_METADATA = 3000
