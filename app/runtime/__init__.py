"""What a running worker needs besides its logic: compatibility with its dependencies' internals
(``compat``), memory return (``memory``) and progress beats (``progress``)."""
