"""Understanding what a lead wrote: a small pipeline of well-kept parts.

- :mod:`.normalise`: case, accents, texting shorthand, emoji.
- :mod:`.classifier`: the intent and dialogue-act classifier (a linear model
  shipped as JSON, trained by :mod:`.train` on the corpus in ``corpus/``).
"""
