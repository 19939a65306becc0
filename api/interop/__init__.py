"""Interoperability with REDCap: import a data dictionary and a records export into a study, and
export a study as REDCap-shaped files."""


def install(app) -> None:
    """Mount the export and REDCap routes and re-register imported instruments when the app starts.

    Tests that build the app without running start-up get the instruments registered on first use
    by the import and export services.
    """
    from api.exports.router import router as exports_router
    from api.interop.router import router as interop_router
    from api.interop.service import load_custom_instruments
    from api.main import mount

    mount(app, exports_router)
    mount(app, interop_router)
    load_custom_instruments(app.state.engine)
