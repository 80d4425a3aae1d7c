// Reads an iCalendar document on stdin with Mozilla's ical.js (Thunderbird's parser) and
// prints {uid: [start, end, dtstamp]} as UTC ISO strings, for test_ical_clients.py.
import ICAL from "ical.js";

let text = "";
for await (const chunk of process.stdin) text += chunk;
const calendar = new ICAL.Component(ICAL.parse(text));
for (const zone of calendar.getAllSubcomponents("vtimezone")) {
  ICAL.TimezoneService.register(zone);
}
const out = {};
for (const component of calendar.getAllSubcomponents("vevent")) {
  const event = new ICAL.Event(component);
  const stamp = component.getFirstPropertyValue("dtstamp");
  out[event.uid] = [event.startDate, event.endDate, stamp].map((t) => t.toJSDate().toISOString());
}
process.stdout.write(JSON.stringify(out));
