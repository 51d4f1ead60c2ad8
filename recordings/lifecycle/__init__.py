"""A recording's life after it is made: archiving from Twilio to the customer's bucket,
retention policies and legal holds."""
