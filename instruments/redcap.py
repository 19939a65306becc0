"""Import custom instruments from a REDCap data dictionary."""


def from_redcap_dictionary(source):
    raise NotImplementedError
