"""Understanding what a lead wrote: a small pipeline of well-kept parts.

- :mod:`.normalise`: case, accents, texting shorthand, emoji.
- :mod:`.classifier`: the intent and dialogue-act classifier (a linear model
  shipped as JSON, trained by :mod:`.train` on the corpus in ``corpus/``).
- :mod:`.quantities`: money, rooms, floor area, monthly rent.
- :mod:`.dates`: target dates and days-until, from the message's timestamp.
- :mod:`.places`: US cities and states (gazetteer, fuzzy matching).
- :mod:`.phrases` and :mod:`.rules`: phrase tables and the rules that stay rules
  (carrier STOP/START keywords, financing kinds, property types...).
- :mod:`.reading`: all of them applied to one message (:func:`.reading.read_message`).
"""
