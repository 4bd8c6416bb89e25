"""What every driver's output passes through before anything else sees it.

``chain`` (the ``Pipeline`` and the ``Stage`` contract), ``stages`` (validate, scale, device
state, rules, store, and ``pipeline()`` that chains them for the composition root),
``privacy`` (pseudonyms and the pseudonymise stage), ``dedup`` (event ids already delivered,
persisted; the dedup stage), ``doors`` (the door tracker as a stage), ``scale`` (raw values
to judged readings).
"""
