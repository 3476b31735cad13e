"""Where moto 5.2.5's EventBridge delivers events otherwise than EventBridge does.

Imported by moto_server.py before start.
"""
from moto.events.utils import EventTemplateParser

# EventBridge user guide, "Amazon EventBridge events": every event carries version, id,
# detail-type, source, account, time, region, resources and detail. moto 5.2.5's default target
# input leaves out `account` (its own paths map has it), which the trigger checks.
EventTemplateParser.DEFAULT_EVENT_INPUT_TEMPLATE = (
    '{"id": "<id>", "time": <time>, "version": "0", "detail-type": "<detail-type>", "source": "<source>", '
    '"account": "<account>", "region": "<region>", "resources": <resources>, "detail": <detail>}'
)
