"""Users and tokens (:mod:`.service`), who may do what (:mod:`.policy`) and the ``authorize``
dependency of routes (:mod:`.dependencies`)."""
